//! DNS wire format (RFC 1035), as much as a stub resolver needs: encoding a
//! query for one name and type, and decoding the header, the question and
//! the answer records of a response. Decoding never panics on bad input.
use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;

pub const HEADER_LEN: usize = 12;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_WIRE_NAME: usize = 255;
/// Most compression pointers followed in one name.
const MAX_POINTERS: usize = 32;

/// What went wrong decoding a message.
pub type WireError = &'static str;

/// The readable name of a response code, for messages.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE {n}"),
    }
}

/// A query message for `name` (already validated, no trailing dot) and
/// `qtype`, class IN, recursion desired. The name is sent as absolute.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&FLAG_RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// The fixed header of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        let h = msg.get(..HEADER_LEN).ok_or("message shorter than a header")?;
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Ok(Header {
            id: word(0),
            flags: word(2),
            qdcount: word(4),
            ancount: word(6),
        })
    }
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
    pub fn recursion_desired(&self) -> bool {
        self.flags & FLAG_RD != 0
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
}

/// The question of a message: name (lowercase, no trailing dot), type, class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// The data of an answer record, for the types a stub resolver follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Other,
}

/// One resource record of the answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

/// Header and question of `msg`, and the offset where the answers begin.
/// `None` question when the message carries none.
pub fn parse_question(msg: &[u8]) -> Result<(Header, Option<Question>, usize), WireError> {
    let header = Header::parse(msg)?;
    let mut pos = HEADER_LEN;
    let mut question = None;
    for _ in 0..header.qdcount {
        let (name, after) = read_name(msg, pos)?;
        let fixed = msg.get(after..after + 4).ok_or("truncated question")?;
        question.get_or_insert(Question {
            name,
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
            qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        });
        pos = after + 4;
    }
    Ok((header, question, pos))
}

/// The answer records of `msg`, starting at `pos` (from [`parse_question`]).
pub fn parse_answers(msg: &[u8], header: &Header, mut pos: usize) -> Result<Vec<Record>, WireError> {
    let mut out = Vec::with_capacity(usize::from(header.ancount).min(64));
    for _ in 0..header.ancount {
        let (name, after) = read_name(msg, pos)?;
        let fixed = msg.get(after..after + 10).ok_or("truncated record")?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let start = after + 10;
        let rdata = msg.get(start..start + len).ok_or("truncated record data")?;
        let data = match rtype {
            TYPE_A => RData::A(Ipv4Addr::from(
                <[u8; 4]>::try_from(rdata).map_err(|_| "A record of wrong length")?,
            )),
            TYPE_AAAA => RData::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(rdata).map_err(|_| "AAAA record of wrong length")?,
            )),
            TYPE_CNAME => {
                let (target, end) = read_name(msg, start)?;
                if end != start + len {
                    return Err("CNAME record of wrong length");
                }
                RData::Cname(target)
            }
            _ => RData::Other,
        };
        // RFC 2181 §8: a TTL with the top bit set counts as zero.
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        out.push(Record { name, class, ttl, data });
        pos = start + len;
    }
    Ok(out)
}

/// Reads a possibly compressed name at `pos`: the name in lowercase
/// presentation form without trailing dot (`.` and `\` inside a label and
/// bytes outside printable ASCII are escaped), and the offset after it.
pub fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    let mut end = None;
    let mut pointers = 0usize;
    loop {
        let len = *msg.get(pos).ok_or("truncated name")?;
        match len & 0xc0 {
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or("truncated compression pointer")?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                pointers += 1;
                if pointers > MAX_POINTERS || target >= pos {
                    return Err("compression pointer loop");
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            0x00 if len == 0 => return Ok((name, end.unwrap_or(pos + 1))),
            0x00 => {
                let len = usize::from(len);
                wire_len += len + 1;
                if wire_len + 1 > MAX_WIRE_NAME {
                    return Err("name longer than 255 bytes");
                }
                let label = msg.get(pos + 1..pos + 1 + len).ok_or("truncated label")?;
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + len;
            }
            _ => return Err("unknown label type"),
        }
    }
}

fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(char::from(b));
            }
            0x21..=0x7e => name.push(char::from(b.to_ascii_lowercase())),
            _ => name.push_str(&format!("\\{b:03}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_an_absolute_recursive_query() {
        let q = encode_query(0xbeef, "www.example.test", TYPE_AAAA);
        let mut want = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x1c\x00\x01");
        assert_eq!(q, want);
        let (h, question, end) = parse_question(&q).expect("own query parses");
        assert_eq!(
            (h.id, h.is_response(), h.recursion_desired(), end),
            (0xbeef, false, true, q.len())
        );
        assert_eq!(
            question,
            Some(Question {
                name: "www.example.test".into(),
                qtype: TYPE_AAAA,
                qclass: CLASS_IN
            })
        );
    }

    #[test]
    fn reads_compressed_and_escaped_names() {
        // "a.b" at 0, then "x" + pointer to 0 at 5, then a label with a dot.
        let msg = b"\x01a\x01b\x00\x01X\xc0\x00\x03p.Q\x00";
        assert_eq!(read_name(msg, 0), Ok(("a.b".to_string(), 5)));
        assert_eq!(read_name(msg, 5), Ok(("x.a.b".to_string(), 9)));
        assert_eq!(read_name(msg, 9), Ok(("p\\.q".to_string(), 14)));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(read_name(b"\xc0\x00", 0), Err("compression pointer loop"));
        assert_eq!(read_name(b"\x01a\xc0\x02", 2), Err("compression pointer loop"));
        assert_eq!(read_name(b"\x05ab", 0), Err("truncated label"));
        assert_eq!(read_name(b"\x01a", 0), Err("truncated name"));
        assert_eq!(read_name(b"\x41a", 0), Err("unknown label type"));
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(read_name(&long, 0), Err("name longer than 255 bytes"));
    }

    #[test]
    fn parses_answers_and_rejects_truncation() {
        let mut msg = encode_query(1, "h.test", TYPE_A);
        msg[2] |= 0x80;
        msg[7] = 3; // three answers
        msg.extend_from_slice(b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x04\x01c\xc0\x0e"); // CNAME c.test
        msg.extend_from_slice(b"\x01c\xc0\x0e\x00\x01\x00\x01\x80\x00\x00\x00\x00\x04\xc0\x00\x02\x01"); // A, ttl top bit
        msg.extend_from_slice(b"\x01c\xc0\x0e\x00\x10\x00\x01\x00\x00\x00\x05\x00\x01z"); // TXT
        let (h, q, pos) = parse_question(&msg).expect("question");
        assert_eq!(q.map(|q| q.name), Some("h.test".to_string()));
        let answers = parse_answers(&msg, &h, pos).expect("answers");
        assert_eq!(
            answers,
            vec![
                Record {
                    name: "h.test".into(),
                    class: CLASS_IN,
                    ttl: 60,
                    data: RData::Cname("c.test".into())
                },
                Record {
                    name: "c.test".into(),
                    class: CLASS_IN,
                    ttl: 0,
                    data: RData::A(Ipv4Addr::new(192, 0, 2, 1))
                },
                Record {
                    name: "c.test".into(),
                    class: CLASS_IN,
                    ttl: 5,
                    data: RData::Other
                },
            ]
        );
        for cut in pos..msg.len() {
            assert!(parse_answers(&msg[..cut], &h, pos).is_err(), "cut at {cut}");
        }
        assert!(Header::parse(&msg[..11]).is_err());
    }

    #[test]
    fn rejects_address_records_of_wrong_length() {
        let mut msg = encode_query(1, "h.test", TYPE_A);
        msg[7] = 1;
        msg.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x03\x01\x02\x03");
        let (h, _, pos) = parse_question(&msg).expect("question");
        assert_eq!(parse_answers(&msg, &h, pos), Err("A record of wrong length"));
    }
}
