//! A BTF-defined socket storage map (BPF_MAP_TYPE_SK_STORAGE), pinned by
//! name like the other maps. aya-ebpf 0.2's own `SkStorage` can neither be
//! pinned nor used outside sock_addr programs, hence this definition; the
//! layout follows libbpf's `.maps` convention, which aya reads.
use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{bpf_map_type::BPF_MAP_TYPE_SK_STORAGE, bpf_sock, BPF_F_NO_PREALLOC, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::generated::bpf_sk_storage_get,
};

/// libbpf's LIBBPF_PIN_BY_NAME.
const PIN_BY_NAME: usize = 1;

#[repr(C)]
pub struct SockStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
    pinning: *const [i32; PIN_BY_NAME],
}

// SAFETY: the fields are placeholders the loader reads from BTF; they are
// never dereferenced.
unsafe impl<T> Sync for SockStorage<T> {}

impl<T> SockStorage<T> {
    pub const fn new() -> Self {
        Self {
            r#type: ptr::null(),
            key: ptr::null(),
            value: ptr::null(),
            map_flags: ptr::null(),
            pinning: ptr::null(),
        }
    }

    /// The storage of full socket `sk`, created zeroed when `create`.
    #[inline(always)]
    pub fn get(&self, sk: *mut bpf_sock, create: bool) -> Option<*mut T> {
        if sk.is_null() {
            return None;
        }
        let flags = if create { BPF_SK_STORAGE_GET_F_CREATE as u64 } else { 0 };
        let map = ptr::from_ref(self).cast_mut().cast::<c_void>();
        // SAFETY: `sk` is a socket pointer the verifier tracks; the helper
        // returns null or a pointer to a `T` owned by the socket.
        let p = unsafe { bpf_sk_storage_get(map, sk.cast(), ptr::null_mut(), flags) }.cast::<T>();
        (!p.is_null()).then_some(p)
    }
}
