//! Kubernetes NetworkPolicy egress semantics, through the real kernel: every
//! case loads its policies with `tollgate verify --batch - --manifests DIR`
//! and asks BPF_PROG_TEST_RUN about a matrix of sources x destinations x
//! ports x families, checked against a truth table written by hand.
//!
//! The cluster (see `tollgate_e2e::truth_table`): namespaces x (ns=x,
//! env=prod), y (ns=y, env=dev), z (ns=z), all `tollgate.dev/egress: enforce`
//! unless a case says otherwise; pods a (pod=a, tier=frontend), b (pod=b,
//! tier=backend), c (pod=c) in each, at 10.244.<ns>.<pod> and
//! fd00:10:244::<ns>:<pod> (x=1, y=2, z=3; a=1, b=2, c=3), serving
//! `serve-{80,81}-{tcp,udp,sctp}`; named port `metrics` is 9090 on a, 9091
//! on b. Columns: the nine pods, the Istio egress gateway pod (`gw`) and
//! Service (`gw-svc`), CoreDNS (`dns`) and kube-dns (`dns-svc`), an unused
//! ClusterIP (`cip`) and an external address (`ext`, 203.0.113.10 /
//! 2001:db8::10).
//!
//! In the tables below, `isolated` lists the sources that a policy with
//! Egress in policyTypes selects, and `allow(from, to, ports)` what their
//! policies allow. Not listed: gateways (any port) and DNS (53 UDP/TCP) are
//! always allowed, and a source that is not isolated reaches everything in
//! the cluster CIDRs and nothing outside. Service addresses (the per-pod
//! Services with `services()`, and the Services a case adds) are judged by
//! every endpoint behind them; the trust cases check that objects of
//! namespaces that are not trusted widen nothing for others.
//!
//! Needs root and bpffs (mounted if missing) and the binary
//! (`cargo xtask build`, or TOLLGATE_BIN). `TT_CASE=substring` runs only the
//! matching cases; `TT_WORKERS=n` sets the parallelism.

use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::truth_table::{self as tt, tcp, udp, Case, Dest, DestKind, Frontend, DUAL, V4, V6};

const ALL: &[&str] = &["*"];
const X_PODS: &[&str] = &["x/a", "x/b", "x/c"];

fn cases() -> Vec<Case> {
    vec![
        // ------------------------------------------------ no policy, policyTypes
        Case::new("no policy: cluster-internal for everyone").from(&["x/a", "y/b", "z/c"]).families(DUAL),
        Case::new("policyTypes omitted with egress rules: Egress applies")
            .policy(
                "x",
                "to-b",
                "
                podSelector: {matchLabels: {pod: a}}
                egress:
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                ",
            )
            .from(&["x/a", "x/b"])
            .isolated(&["x/a"])
            .allow(&["x/a"], &["x/b"], ALL),
        Case::new("policyTypes [] with egress rules: the default, Egress applies")
            .policy(
                "x",
                "to-b-empty-types",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: []
                egress:
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                ",
            )
            .from(&["x/a", "x/b"])
            .isolated(&["x/a"])
            .allow(&["x/a"], &["x/b"], ALL),
        Case::new("podSelector that does not parse: isolates the namespace, allows nothing")
            .policy(
                "x",
                "broken-selector",
                "
                podSelector: {matchExpressions: [{key: pod, operator: in, values: [a]}]}
                policyTypes: [Egress]
                egress: [{}]
                ",
            )
            .from(&["x/a", "x/b", "y/a"])
            .isolated(X_PODS)
            .warnings_ok(),
        Case::new("policyTypes omitted, ingress rules only: egress unaffected")
            .policy(
                "x",
                "ingress-only",
                "
                podSelector: {}
                ingress:
                - from: [{podSelector: {}}]
                ",
            )
            .from(&["x/a", "x/b"]),
        Case::new("policyTypes [Ingress]: egress rules are ignored")
            .policy(
                "x",
                "deny-ingress",
                "
                podSelector: {}
                policyTypes: [Ingress]
                ",
            )
            .policy(
                "x",
                "ingress-typed-with-egress-rules",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Ingress]
                egress:
                - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
                ",
            )
            .from(&["x/a", "x/b"]),
        Case::new("policyTypes [Ingress, Egress] without egress rules: deny all egress")
            .policy(
                "x",
                "deny-both",
                "
                podSelector: {}
                policyTypes: [Ingress, Egress]
                ",
            )
            .from(&["x/a", "x/c", "y/a"])
            .families(DUAL)
            .isolated(X_PODS),
        // ------------------------------------------------ deny all / allow all
        Case::new("deny-all egress")
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .from(&["x/a", "x/b"])
            .families(DUAL)
            .isolated(X_PODS),
        Case::new("explicit egress: [] is deny-all")
            .policy(
                "x",
                "empty-egress",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress: []
                ",
            )
            .from(&["x/a", "x/b"])
            .isolated(&["x/a"]),
        Case::new("egress rules of an Ingress-only policy add nothing to an isolated pod")
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .policy(
                "x",
                "ingress-typed-with-egress-rules",
                "
                podSelector: {}
                policyTypes: [Ingress]
                egress:
                - to: [{ipBlock: {cidr: 0.0.0.0/0}}, {namespaceSelector: {}}]
                ",
            )
            .isolated(X_PODS),
        Case::new("allow-all egress (egress: [{}])")
            .policy(
                "x",
                "allow-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress: [{}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, ALL, ALL),
        Case::new("deny-all plus allow-all on the same pod: the union allows")
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .policy(
                "x",
                "allow-all-a",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress: [{}]
                ",
            )
            .from(&["x/a", "x/b"])
            .families(DUAL)
            .isolated(X_PODS)
            .allow(&["x/a"], ALL, ALL),
        // ------------------------------------------------ ports without peers
        Case::new("ports-only rule: TCP 80 to every destination, external included")
            .policy(
                "x",
                "tcp-80-anywhere",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - ports: [{protocol: TCP, port: 80}]
                ",
            )
            .families(DUAL)
            .isolated(&["x/a"])
            .allow(&["x/a"], ALL, &["tcp/80"]),
        Case::new("ports-only rule with to: [] and no protocol (defaults to TCP)")
            .policy(
                "x",
                "port-81-anywhere",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to: []
                  ports: [{port: 81}]
                ",
            )
            .isolated(&["x/a"])
            .allow(&["x/a"], ALL, &["tcp/81"]),
        Case::new("empty ports list: every port and protocol")
            .policy(
                "x",
                "to-c-all-ports",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: c}}}]
                  ports: []
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["x/c"], ALL),
        // ------------------------------------------------ pod and namespace peers
        Case::new("podSelector peer: pods of the policy's namespace only")
            .policy(
                "x",
                "to-b",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                ",
            )
            .from(&["x/a", "x/c"])
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["x/b"], ALL),
        Case::new("podSelector peer of a policy in y selects pods in y")
            .policy(
                "y",
                "y-a-to-b",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                ",
            )
            .from(&["y/a", "x/a"])
            .isolated(&["y/a"])
            .allow(&["y/a"], &["y/b"], ALL),
        Case::new("namespaceSelector peer: every pod of the matching namespaces")
            .policy(
                "x",
                "to-ns-y",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["y/*"], ALL),
        Case::new("namespaceSelector and podSelector in one peer: AND")
            .policy(
                "x",
                "to-y-b",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector: {matchLabels: {ns: y}}
                    podSelector: {matchLabels: {pod: b}}
                ",
            )
            .from(&["x/a", "x/b"])
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["y/b"], ALL),
        Case::new("namespaceSelector and podSelector as two peers: OR")
            .policy(
                "x",
                "to-y-or-b",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector: {matchLabels: {ns: y}}
                  - podSelector: {matchLabels: {pod: b}}
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["y/*", "x/b"], ALL),
        Case::new("namespaceSelector {}: every pod in every namespace, nothing else")
            .policy(
                "x",
                "to-all-pods",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["*/*"], ALL),
        Case::new("namespaceSelector {} with podSelector: pod c in any namespace")
            .policy(
                "x",
                "to-every-c",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector: {}
                    podSelector: {matchLabels: {pod: c}}
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["*/c"], ALL),
        Case::new("namespaces by kubernetes.io/metadata.name (set by the API server, not in the YAML)")
            .policy(
                "x",
                "by-name",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]
                - to:
                  - namespaceSelector:
                      matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [kube-system]}]
                  ports: [{protocol: TCP, port: 81}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["z/*"], ALL)
            .allow(X_PODS, &[tt::DNS_POD], &["tcp/81"]),
        // ------------------------------------------------ matchExpressions
        Case::new("pod matchExpressions In")
            .policy(
                "x",
                "tier-in",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchExpressions: [{key: tier, operator: In, values: [frontend, backend]}]}}]
                ",
            )
            .from(&["x/a", "x/c"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/a", "x/b"], ALL),
        Case::new("pod matchExpressions NotIn (pods without the key match)")
            .policy(
                "x",
                "tier-notin",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [frontend]}]}}]
                ",
            )
            .from(&["x/a", "x/c"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/b", "x/c"], ALL),
        Case::new("pod matchExpressions Exists")
            .policy(
                "x",
                "tier-exists",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]
                ",
            )
            .from(&["x/a", "x/c"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/a", "x/b"], ALL),
        Case::new("pod matchExpressions DoesNotExist")
            .policy(
                "x",
                "tier-absent",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]
                ",
            )
            .from(&["x/a", "x/c"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/c"], ALL),
        Case::new("namespace matchExpressions In")
            .policy(
                "x",
                "ns-in",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y, z]}]}}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["y/*", "z/*"], ALL),
        Case::new("namespace matchExpressions NotIn (namespaces without the key match)")
            .policy(
                "x",
                "ns-notin",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x, y]}]}}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["z/*", "kube-system/*", "istio-system/*"], ALL),
        Case::new("namespace matchExpressions Exists")
            .policy(
                "x",
                "env-exists",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["x/*", "y/*"], ALL),
        Case::new("namespace matchExpressions DoesNotExist")
            .policy(
                "x",
                "env-absent",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["z/*", "kube-system/*", "istio-system/*"], ALL),
        Case::new("matchLabels with two labels: all must match")
            .policy(
                "x",
                "two-labels",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: b, tier: frontend}}}]
                  ports: [{protocol: TCP, port: 80}]
                - to: [{podSelector: {matchLabels: {pod: b, tier: backend}}}]
                  ports: [{protocol: UDP, port: 80}]
                - to:
                  - podSelector:
                      matchExpressions:
                      - {key: tier, operator: Exists}
                      - {key: pod, operator: NotIn, values: [b]}
                  ports: [{protocol: TCP, port: 81}]
                ",
            )
            .from(&["x/b", "x/c"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/b"], &["udp/80"])
            .allow(X_PODS, &["x/a"], &["tcp/81"]),
        Case::new("matchLabels and matchExpressions together: AND")
            .policy(
                "x",
                "labels-and-expressions",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector:
                      matchLabels: {env: dev}
                      matchExpressions: [{key: ns, operator: In, values: [x, y]}]
                    podSelector:
                      matchLabels: {pod: c}
                      matchExpressions: [{key: tier, operator: DoesNotExist}]
                - to:
                  - podSelector:
                      matchLabels: {tier: backend}
                      matchExpressions: [{key: pod, operator: In, values: [a, c]}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["y/c"], ALL),
        Case::new("podSelector with matchExpressions selects the isolated pods (NotIn)")
            .policy(
                "x",
                "deny-not-a",
                "
                podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}
                policyTypes: [Egress]
                ",
            )
            .from(&["x/a", "x/b", "x/c"])
            .isolated(&["x/b", "x/c"]),
        // ------------------------------------------------ ipBlock
        Case::new("ipBlock with except, IPv4")
            .policy(
                "x",
                "cidr-v4",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.2/32]}
                  - ipBlock: {cidr: 203.0.113.0/24}
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow_in(V4, X_PODS, &["y/a", "y/c", "ext"], ALL),
        Case::new("ipBlock with except, IPv6")
            .policy(
                "x",
                "cidr-v6",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 'fd00:10:244::3:0/112', except: ['fd00:10:244::3:3/128']}
                  - ipBlock: {cidr: '2001:db8::/32'}
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow_in(V6, X_PODS, &["z/a", "z/b", "ext"], ALL),
        Case::new("ipBlock covering pod IPs and the Service range")
            .policy(
                "x",
                "cidr-pods",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 10.244.1.2/32}
                  - ipBlock: {cidr: 'fd00:10:244::2:0/112'}
                  - ipBlock: {cidr: 10.96.0.0/12}
                  ports: [{protocol: UDP, port: 80}, {protocol: TCP, port: 81}]
                ",
            )
            .from(&["x/a", "x/c"])
            .families(DUAL)
            .isolated(X_PODS)
            .allow_in(V4, X_PODS, &["x/b", "cip", "gw-svc", "dns-svc"], &["udp/80", "tcp/81"])
            .allow_in(V6, X_PODS, &["y/*"], &["udp/80", "tcp/81"]),
        Case::new("ipBlock 0.0.0.0/0 and ::/0 except the cluster: internet only")
            .policy(
                "x",
                "internet-only",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}
                  - ipBlock: {cidr: '::/0', except: ['fd00::/8']}
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["ext"], ALL),
        Case::new("overlapping peers keep their own ports (10.244.0.0/16 TCP 80, pod b UDP 81)")
            .policy(
                "x",
                "overlap",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{ipBlock: {cidr: 10.244.0.0/16}}]
                  ports: [{protocol: TCP, port: 80}]
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                  ports: [{protocol: UDP, port: 81}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow_in(V4, X_PODS, &["*/*"], &["tcp/80"])
            .allow(X_PODS, &["x/b"], &["udp/81"]),
        Case::new("an except hole refilled by another peer of the same rule")
            .policy(
                "x",
                "hole",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}
                  - namespaceSelector: {matchLabels: {ns: y}}
                    podSelector: {matchLabels: {pod: b}}
                  ports: [{protocol: TCP, port: 80}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow_in(V4, X_PODS, &["x/*", "z/*", "kube-system/*", "istio-system/*"], &["tcp/80"])
            .allow(X_PODS, &["y/b"], &["tcp/80"]),
        Case::new("an except in one policy does not remove what another policy allows")
            .policy(
                "x",
                "all-but-x",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.244.1.0/24]}}]
                ",
            )
            .policy(
                "x",
                "to-c-udp80",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: c}}}]
                  ports: [{protocol: UDP, port: 80}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow_in(V4, X_PODS, &["y/*", "z/*", "kube-system/*", "istio-system/*", "cip", "ext"], ALL)
            .allow(X_PODS, &["x/c"], &["udp/80"]),
        Case::new("an except covering the gateway and DNS pods does not remove them")
            .policy(
                "x",
                "pods-but-infra",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.9.0/24]}}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["x/*", "y/*", "z/*"], ALL),
        Case::new("ipBlock with host bits set (10.244.1.5/24 is 10.244.1.0/24)")
            .policy(
                "x",
                "sloppy-cidr",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{ipBlock: {cidr: 10.244.1.5/24}}]
                ",
            )
            .from(&["x/a", "x/b"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/*"], ALL)
            .warnings_ok(),
        // ------------------------------------------------ peers that select nothing
        Case::new("peers that select no pod or namespace allow nothing")
            .policy(
                "x",
                "to-nobody",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - podSelector: {matchLabels: {pod: nobody}}
                  - namespaceSelector: {matchLabels: {ns: nowhere}}
                  ports: [{protocol: TCP, port: 80}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS),
        Case::new("a named port that no pod has allows nothing")
            .policy(
                "x",
                "to-nothere",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                  ports: [{port: nothere}]
                - ports: [{protocol: UDP, port: nothere}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS),
        // ------------------------------------------------ ports and protocols
        Case::new("numeric ports, TCP and UDP in one rule")
            .policy(
                "x",
                "tcp80-udp81",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {}}]
                  ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 81}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["x/*"], &["tcp/80", "udp/81"]),
        Case::new("UDP only")
            .policy(
                "x",
                "udp80",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
                  ports: [{protocol: UDP, port: 80}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["y/*"], &["udp/80"]),
        Case::new("SCTP is not TCP")
            .policy(
                "x",
                "sctp80",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                  ports: [{protocol: SCTP, port: 80}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["*/*"], &["sctp/80"]),
        Case::new("endPort ranges (TCP 80-81, UDP 81-9090)")
            .policy(
                "x",
                "ranges",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
                  ports:
                  - {protocol: TCP, port: 80, endPort: 81}
                  - {protocol: UDP, port: 81, endPort: 9090}
                ",
            )
            .ports(&[udp(9090), udp(9091), tcp(9090)])
            .isolated(X_PODS)
            .allow(X_PODS, &["y/*"], &["tcp/80", "tcp/81", "udp/81", "udp/9090"]),
        Case::new("more than 16 ports in one rule (20 non-adjacent ports)")
            .policy(
                "x",
                "many-ports",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
                  ports:
                  - {protocol: TCP, port: 80}
                  - {protocol: TCP, port: 81}
                  - {protocol: UDP, port: 80}
                  - {protocol: UDP, port: 81}
                  - {protocol: SCTP, port: 80}
                  - {protocol: SCTP, port: 81}
                  - {port: 1001}
                  - {port: 1003}
                  - {port: 1005}
                  - {port: 1007}
                  - {port: 1009}
                  - {port: 1011}
                  - {port: 1013}
                  - {port: 1015}
                  - {port: 1017}
                  - {port: 1019}
                  - {port: 1021}
                  - {port: 1023}
                  - {port: 1025}
                  - {port: 1027}
                ",
            )
            .ports(&[tcp(1001), tcp(1015), tcp(1027), tcp(1002)])
            .isolated(X_PODS)
            .allow(X_PODS, &["y/*"], &["tcp/80", "tcp/81", "udp/80", "udp/81", "sctp/80", "tcp/1001", "tcp/1015", "tcp/1027"]),
        Case::new("named port serve-81-udp resolves on the destination pods")
            .policy(
                "x",
                "named-udp",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                  ports: [{protocol: UDP, port: serve-81-udp}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .allow(X_PODS, &["x/*", "y/*", "z/*"], &["udp/81"]),
        Case::new("named port with a different number per destination pod (metrics: a=9090, b=9091)")
            .policy(
                "x",
                "named-metrics",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                  ports: [{port: metrics}]
                ",
            )
            .from(&["x/a", "x/c"])
            .families(DUAL)
            .ports(&[tcp(9090), tcp(9091), udp(9090)])
            .isolated(X_PODS)
            .allow(X_PODS, &["*/a"], &["tcp/9090"])
            .allow(X_PODS, &["*/b"], &["tcp/9091"]),
        Case::new("named port in a ports-only rule matches pods that have it, not external IPs")
            .policy(
                "x",
                "named-anywhere",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - ports: [{protocol: TCP, port: metrics}]
                ",
            )
            .from(&["x/a", "x/c"])
            .families(DUAL)
            .ports(&[tcp(9090), tcp(9091)])
            .isolated(X_PODS)
            .allow(X_PODS, &["*/a"], &["tcp/9090"])
            .allow(X_PODS, &["*/b"], &["tcp/9091"]),
        Case::new("named port must match the protocol (serve-80-udp with default TCP matches nothing)")
            .policy(
                "x",
                "named-proto",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                  ports: [{port: serve-80-udp}]
                - to: [{namespaceSelector: {}}]
                  ports: [{protocol: SCTP, port: serve-80-sctp}]
                ",
            )
            .isolated(X_PODS)
            .allow(X_PODS, &["x/*", "y/*", "z/*"], &["sctp/80"]),
        // ------------------------------------------------ several policies
        Case::new("several policies selecting the same pod: union")
            .policy(
                "x",
                "a-to-y-tcp80",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
                  ports: [{protocol: TCP, port: 80}]
                ",
            )
            .policy(
                "x",
                "all-to-z-c-udp81",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector: {matchLabels: {ns: z}}
                    podSelector: {matchLabels: {pod: c}}
                  ports: [{protocol: UDP, port: 81}]
                ",
            )
            .from(&["x/a", "x/b"])
            .families(DUAL)
            .isolated(X_PODS)
            .allow(&["x/a"], &["y/*"], &["tcp/80"])
            .allow(X_PODS, &["z/c"], &["udp/81"]),
        Case::new("a policy in namespace y does not affect pods in x")
            .policy(
                "y",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .from(&["x/a", "y/a"])
            .families(DUAL)
            .isolated(&["y/*"]),
        Case::new("a policy that does not select x/a leaves it cluster-internal")
            .policy(
                "x",
                "b-to-internet",
                "
                podSelector: {matchLabels: {pod: b}}
                policyTypes: [Egress]
                egress:
                - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
                ",
            )
            .from(&["x/a", "x/b"])
            .isolated(&["x/b"])
            .allow_in(V4, &["x/b"], &["ext"], ALL),
        // ------------------------------------------------ Services (evaluated as their backends)
        Case::new("Services, no policy: every ClusterIP is cluster-internal")
            .from(&["x/a", "y/b"])
            .families(DUAL)
            .services(),
        Case::new("Services, deny-all: ClusterIPs denied too")
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .services(),
        Case::new("Services: a podSelector peer allows the Service of the selected pod")
            .policy(
                "x",
                "to-b",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .services()
            .allow(X_PODS, &["x/b"], ALL),
        Case::new("Services: an ipBlock holding x/b's IPv4 allows its Service over IPv4 only")
            .policy(
                "x",
                "to-b-by-ip",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{ipBlock: {cidr: 10.244.1.2/32}}]
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .services()
            .allow_in(V4, X_PODS, &["x/b"], ALL),
        Case::new("Services: TCP 80 to namespace y allows Service port 8080 (targetPort serve-80-tcp)")
            .policy(
                "x",
                "to-y-tcp80",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
                  ports: [{protocol: TCP, port: 80}]
                ",
            )
            .isolated(X_PODS)
            .services()
            .allow(X_PODS, &["y/*"], &["tcp/80"]),
        Case::new("Services: named port serve-81-udp allows the Services' UDP 81")
            .policy(
                "x",
                "named-81-udp",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{namespaceSelector: {}}]
                  ports: [{protocol: UDP, port: serve-81-udp}]
                ",
            )
            .isolated(X_PODS)
            .services()
            .allow(X_PODS, &["x/*", "y/*", "z/*"], &["udp/81"]),
        // ------------------------------------------------ modes
        Case::new("namespace without the tollgate label: not enforced")
            .ns_mode("x", None)
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .from(&["x/a", "y/a"])
            .families(DUAL),
        Case::new("audit namespace: verdicts as enforce, mode audit")
            .ns_mode("x", Some("audit"))
            .policy(
                "x",
                "only-b-tcp80",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to: [{podSelector: {matchLabels: {pod: b}}}]
                  ports: [{protocol: TCP, port: 80}]
                ",
            )
            .from(&["x/a", "y/a"])
            .isolated(X_PODS)
            .allow(X_PODS, &["x/b"], &["tcp/80"]),
        Case::new("unknown tollgate label value fails closed (enforce)")
            .ns_mode("x", Some("yes-please"))
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .isolated(X_PODS)
            .warnings_ok(),
        Case::new("gateway pod in an enforced namespace is enforced like any other pod")
            .ns_mode("istio-system", Some("enforce"))
            .policy(
                "istio-system",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .from(&[tt::GATEWAY_POD, "x/a"])
            .isolated(&[tt::GATEWAY_POD])
            .families(DUAL),
        // ------------------------------------------------ Services judged by every endpoint
        Case::new("Services: a selectorless Service whose EndpointSlice points outside is denied, even cluster-internal")
            .object(&service("x", "s-out", "", ("10.96.8.1", "fd00:10:96::8:1"), "[{port: 80}]", ""))
            .object(&slices("x", "s-out", 80, ("203.0.113.10", "2001:db8::10")))
            .dest(Dest::extra("s-out", DestKind::Service, ("10.96.8.1", "fd00:10:96::8:1"), true, Some(frontend(&[tcp(80)], &["ext"]))))
            .from(&["x/a", "y/b"])
            .families(DUAL),
        Case::new("Services: a Service with no endpoints is denied")
            .object(&service("x", "s-none", "{pod: nobody}", ("10.96.8.2", "fd00:10:96::8:2"), "[{port: 80}]", ""))
            .dest(Dest::extra("s-none", DestKind::Service, ("10.96.8.2", "fd00:10:96::8:2"), true, Some(frontend(&[tcp(80)], &[]))))
            .families(DUAL),
        Case::new("Services: externalIPs capturing a pod's address take that port away")
            .object(&service(
                "x",
                "s-cap",
                "",
                ("10.96.8.3", "fd00:10:96::8:3"),
                "[{port: 80}]",
                "  externalIPs: [10.244.2.2, 'fd00:10:244::2:2']\n",
            ))
            .object(&slices("x", "s-cap", 80, ("203.0.113.10", "2001:db8::10")))
            .dest(Dest::extra("s-cap", DestKind::Service, ("10.96.8.3", "fd00:10:96::8:3"), true, Some(frontend(&[tcp(80)], &["ext"]))))
            .capture("y/b", Frontend { cluster_ip: false, ..frontend(&[tcp(80)], &["ext"]) })
            .families(DUAL),
        Case::new("Services: a backend the policy does not allow denies the Service (y/d shares y/a's labels)")
            .object(EXTRA_POD_Y_D)
            .dest(Dest::extra("y/d", DestKind::Pod, ("10.244.2.4", "fd00:10:244::2:4"), true, None))
            .capture("s-y-a", Frontend { ports: None, backends: vec!["y/a".into(), "y/d".into()], cluster_ip: true })
            .policy(
                "x",
                "to-y-a-by-ip",
                "
                podSelector: {}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 10.244.2.1/32}
                  - ipBlock: {cidr: 'fd00:10:244::2:1/128'}
                ",
            )
            .families(DUAL)
            .isolated(X_PODS)
            .services()
            .allow(X_PODS, &["y/a"], ALL),
        Case::new("Services: a load-balancer IP is allowed only where the address itself is, and every endpoint")
            .object(&service(
                "x",
                "s-lb",
                "{pod: b}",
                ("10.96.8.5", "fd00:10:96::8:5"),
                "[{port: 80}]",
                "status: {loadBalancer: {ingress: [{ip: 198.51.100.7}, {ip: '2001:db8:1::7'}]}}\n",
            ))
            .object(&service(
                "x",
                "s-lb-out",
                "",
                ("10.96.8.6", "fd00:10:96::8:6"),
                "[{port: 80}]",
                "status: {loadBalancer: {ingress: [{ip: 198.51.100.8}, {ip: '2001:db8:1::8'}]}}\n",
            ))
            .object(&slices("x", "s-lb-out", 80, ("203.0.113.10", "2001:db8::10")))
            .dest(Dest::extra("lb", DestKind::Service, ("198.51.100.7", "2001:db8:1::7"), false, Some(lb(&["x/b"]))))
            .dest(Dest::extra("lb-out", DestKind::Service, ("198.51.100.8", "2001:db8:1::8"), false, Some(lb(&["ext"]))))
            .policy(
                "y",
                "to-x-b-and-the-balancers",
                "
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: b}}}
                  - ipBlock: {cidr: 198.51.100.0/24}
                  - ipBlock: {cidr: '2001:db8:1::/64'}
                  ports: [{port: 80}]
                ",
            )
            .from(&["x/a", "y/a", "y/c"])
            .families(DUAL)
            .isolated(&["y/a"])
            .allow(&["y/a"], &["x/b", "lb", "lb-out"], &["tcp/80"]),
        // ------------------------------------------------ who may widen egress
        Case::new("trust: an Istio Gateway in an untrusted namespace makes no gateway")
            .object(GATEWAY_IN_Z)
            .ns_mode("z", None)
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .from(&["x/a", "z/c"])
            .isolated(X_PODS)
            .warnings_ok(),
        Case::new("trust: the same Gateway in a namespace trusted by --trusted-namespace makes z/c a gateway")
            .object(GATEWAY_IN_Z)
            .ns_mode("z", None)
            .trusted(&["istio-system", "kube-system", "z"])
            .gateway("z/c")
            .policy(
                "x",
                "deny-all",
                "
                podSelector: {}
                policyTypes: [Egress]
                ",
            )
            .from(&["x/a", "z/c"])
            .families(DUAL)
            .isolated(X_PODS)
            .warnings_ok(),
        Case::new("trust: a MESH_INTERNAL ServiceEntry of an untrusted namespace counts for its own namespace only")
            .object(
                "
                apiVersion: networking.istio.io/v1
                kind: ServiceEntry
                metadata: {name: everything, namespace: z}
                spec:
                  hosts: [ext.internal]
                  location: MESH_INTERNAL
                  addresses: [203.0.113.10/32, '2001:db8::10/128']
                  exportTo: ['*']
                ",
            )
            .internal_for(&["z/*"], &["ext"])
            .from(&["x/a", "z/a"])
            .families(DUAL)
            .warnings_ok(),
    ]
}

/// A ClusterIP frontend on `ports` forwarding to `backends`.
fn frontend(ports: &[tt::Port], backends: &[&str]) -> Frontend {
    Frontend { ports: Some(ports.to_vec()), backends: backends.iter().map(|b| b.to_string()).collect(), cluster_ip: true }
}

/// A load-balancer IP on TCP 80 forwarding to `backends`.
fn lb(backends: &[&str]) -> Frontend {
    Frontend { cluster_ip: false, ..frontend(&[tcp(80)], backends) }
}

/// A dual-stack Service; `selector` empty for none.
fn service(ns: &str, name: &str, selector: &str, (v4, v6): (&str, &str), ports: &str, extra: &str) -> String {
    let selector = if selector.is_empty() { String::new() } else { format!("  selector: {selector}\n") };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{selector}  clusterIP: {v4}\n  clusterIPs: [{v4}, '{v6}']\n  ipFamilies: [IPv4, IPv6]\n  ports: {ports}\n{extra}"
    )
}

/// Hand-written EndpointSlices (one per family) of Service `ns/svc` with
/// one endpoint each, on TCP `port`.
fn slices(ns: &str, svc: &str, port: u16, (v4, v6): (&str, &str)) -> String {
    let one = |family: &str, suffix: &str, addr: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-{suffix}, namespace: {ns}, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: {family}\nports: [{{name: '', port: {port}, protocol: TCP}}]\nendpoints:\n- addresses: ['{addr}']\n")
    };
    format!("{}---\n{}", one("IPv4", "v4", v4), one("IPv6", "v6", v6))
}

/// A Gateway in z (not trusted by default) selecting pod z/c.
const GATEWAY_IN_Z: &str = "
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: escape, namespace: z}
    spec:
      selector: {pod: c}
";

/// A fourth pod in y with y/a's labels (so `s-y-a` selects both).
const EXTRA_POD_Y_D: &str = "
    apiVersion: v1
    kind: Pod
    metadata: {name: d, namespace: y, uid: 7a11da7e-0000-4000-8000-000000000204, labels: {pod: a, tier: frontend}}
    spec:
      nodeName: node-1
      containers:
      - name: main
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        ports:
        - {name: serve-80-tcp, containerPort: 80, protocol: TCP}
        - {name: serve-81-tcp, containerPort: 81, protocol: TCP}
        - {name: serve-80-udp, containerPort: 80, protocol: UDP}
        - {name: serve-81-udp, containerPort: 81, protocol: UDP}
        - {name: serve-80-sctp, containerPort: 80, protocol: SCTP}
        - {name: serve-81-sctp, containerPort: 81, protocol: SCTP}
    status: {phase: Running, podIP: 10.244.2.4, podIPs: [{ip: 10.244.2.4}, {ip: 'fd00:10:244::2:4'}]}
";

#[test]
fn netpol_egress_truth_table() {
    tt::require_root_and_bpffs();
    let bin = default_tollgate_bin();
    assert!(bin.is_file(), "tollgate binary not found at {} (build it with `cargo xtask build`, or set TOLLGATE_BIN)", bin.display());

    let filter = std::env::var("TT_CASE").ok();
    let cases: Vec<Case> =
        cases().into_iter().filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f))).collect();
    assert!(!cases.is_empty(), "TT_CASE={filter:?} matches no case");
    let workers = std::env::var("TT_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)));

    let started = std::time::Instant::now();
    let outcomes = tt::run_all(&cases, &bin, workers);

    let (mut queries, mut mismatches, mut failed) = (0, 0, Vec::new());
    for o in &outcomes {
        queries += o.queries;
        mismatches += o.mismatches.len();
        let status = if o.ok() { "ok  " } else { "FAIL" };
        println!("{status} {:>5} queries {:>6} ms  {}", o.queries, o.elapsed.as_millis(), o.name);
        if o.ok() && !o.diagnostics.is_empty() {
            print!("{}", o.diagnostics);
        }
        if !o.ok() {
            failed.push(o);
        }
    }
    for o in &failed {
        println!("\n{}", o.report);
    }

    // Nothing may be left on bpffs.
    let prefix = tt::bpffs_prefix();
    let leftovers: Vec<String> = std::fs::read_dir("/sys/fs/bpf")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&prefix)).collect())
        .unwrap_or_default();

    let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
    println!(
        "\ntruth table: {} cases, {} queries, {} mismatches{} ({:.1} s, {} workers, {})",
        outcomes.len(),
        tt::thousands(queries),
        tt::thousands(mismatches),
        if errors > 0 { format!(", {errors} cases with errors") } else { String::new() },
        started.elapsed().as_secs_f64(),
        workers,
        bin.display()
    );
    assert!(leftovers.is_empty(), "left behind under /sys/fs/bpf: {leftovers:?}");
    assert!(
        failed.is_empty(),
        "{} of {} cases failed: {}",
        failed.len(),
        outcomes.len(),
        failed.iter().map(|o| format!("{:?}", o.name)).collect::<Vec<_>>().join(", ")
    );
}
