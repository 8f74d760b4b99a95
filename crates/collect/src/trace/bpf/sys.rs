//! The bpf(2) commands the drop reader uses, each a thin wrapper around
//! the one `unsafe` system call (nix and rustix have no bpf()): create a
//! perf event array map, set its entries, load a program (with the
//! verifier's log on failure), open a raw tracepoint link, and read a
//! program's or link's id (for the tests' "nothing left" checks). Each
//! command's attribute struct is the prefix of the kernel's `union
//! bpf_attr` it needs, zeroed, with its size passed: the kernel zero-fills
//! the rest and checks unused fields are zero.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::insn::Insn;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_int = 17;
const BPF_LINK_GET_FD_BY_ID: libc::c_int = 30;

pub const BPF_MAP_TYPE_PERF_EVENT_ARRAY: u32 = 4;
pub const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// Helpers the program calls (uapi/linux/bpf.h's numbering).
pub const HELPER_PERF_EVENT_OUTPUT: i32 = 25;
pub const HELPER_PROBE_READ_KERNEL: i32 = 113;
/// bpf_perf_event_output's flags: the map entry of the current CPU.
pub const BPF_F_CURRENT_CPU: i64 = 0xffff_ffff;

/// The verifier log kept on a failed load (its last lines say why).
const LOG_SIZE: usize = 1 << 20;

/// # Safety
/// `attr` must point to `size` readable and writable bytes laid out as
/// the prefix of `union bpf_attr` that `cmd` reads, with every pointer in
/// it valid for what the kernel does with it during the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: the caller's promise, passed through.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(r: libc::c_long) -> std::io::Result<OwnedFd> {
    let fd = i32::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a new descriptor the kernel just returned (O_CLOEXEC is the
    // default for bpf objects), owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// A BPF_MAP_TYPE_PERF_EVENT_ARRAY of `entries` CPUs.
pub fn perf_event_array(entries: u32) -> std::io::Result<OwnedFd> {
    let mut attr = MapCreate {
        map_type: BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        ..Default::default()
    };
    attr.map_name[..12].copy_from_slice(b"sockql_drops");
    // SAFETY: attr is the BPF_MAP_CREATE prefix, no pointers.
    owned(unsafe { bpf(BPF_MAP_CREATE, &mut attr) }?)
}

#[repr(C)]
#[derive(Default)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// map[key] = value (both u32).
pub fn map_update(map: &OwnedFd, key: u32, value: u32) -> std::io::Result<()> {
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    // SAFETY: key and value point to 4-byte values alive for the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Why a load failed: the errno and, when the verifier said why, the
/// last lines of its log.
#[derive(Debug)]
pub struct LoadError {
    pub source: std::io::Error,
    pub log: String,
}

/// Load a raw tracepoint program named `name` (at most 15 bytes). The
/// first try asks for no log (the verifier is faster without); a refusal
/// is loaded again with the log on, to say why.
pub fn prog_load(name: &str, insns: &[Insn]) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        let n = name.len().min(15);
        attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: insns and license are alive for the call; the log
        // buffer, when given, is log_size writable bytes.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr) }.and_then(owned)
    };
    load(None).or_else(|source| {
        let mut log = vec![0u8; LOG_SIZE];
        match load(Some(&mut log)) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let end = log.iter().position(|&c| c == 0).unwrap_or(log.len());
                Err(LoadError { source, log: String::from_utf8_lossy(&log[..end]).into_owned() })
            }
        }
    })
}

#[repr(C)]
#[derive(Default)]
struct RawTracepointOpen {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// Attach `prog` to raw tracepoint `name`: the link lives as long as its
/// descriptor (and the program as long as the link or its own fd).
pub fn raw_tracepoint_open(name: &std::ffi::CStr, prog: &OwnedFd) -> std::io::Result<OwnedFd> {
    let mut attr = RawTracepointOpen { name: name.as_ptr() as u64, prog_fd: prog.as_raw_fd() as u32, _pad: 0 };
    // SAFETY: name is a NUL-terminated string alive for the call.
    owned(unsafe { bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr) }?)
}

#[repr(C)]
#[derive(Default)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// BPF_OBJ_GET_INFO_BY_FD: the first N bytes of a program's or link's
/// info struct (both start with a u32 then the object's id); a kernel
/// whose struct is shorter leaves the rest zero.
fn info<const N: usize>(fd: &OwnedFd, buf: &mut [u8; N]) -> std::io::Result<()> {
    let mut attr =
        InfoByFd { bpf_fd: fd.as_raw_fd() as u32, info_len: buf.len() as u32, info: buf.as_mut_ptr() as u64 };
    // SAFETY: info points to info_len writable bytes.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.map(drop)
}

/// A program's id (`bpf_prog_info.id`, the second u32).
pub fn prog_id(fd: &OwnedFd) -> std::io::Result<u32> {
    let mut buf = [0u8; 64];
    info(fd, &mut buf)?;
    Ok(u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]))
}

/// How often the kernel skipped the program because it was already
/// running on that CPU (`bpf_prog_info.recursion_misses`, bpftool's
/// "recursion_misses", Linux 5.12+; 0 before): tracepoint hits it never
/// saw, which no ring reports.
pub fn prog_recursion_misses(fd: &OwnedFd) -> std::io::Result<u64> {
    // type, id, tag[8], ... run_time_ns (192), run_cnt (200),
    // recursion_misses (208): the uapi struct bpf_prog_info.
    const AT: usize = 208;
    let mut buf = [0u8; AT + 8];
    info(fd, &mut buf)?;
    Ok(buf.get(AT..AT + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_ne_bytes))
}

/// A link's id (`bpf_link_info`: type, then id).
pub fn link_id(fd: &OwnedFd) -> std::io::Result<u32> {
    let mut buf = [0u8; 64];
    info(fd, &mut buf)?;
    Ok(u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]))
}

#[repr(C)]
#[derive(Default)]
struct GetById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Whether a program (`link == false`) or link with this id still exists
/// anywhere on the host (opening it by id: ENOENT once it is gone).
pub fn exists(id: u32, link: bool) -> std::io::Result<bool> {
    let mut attr = GetById { id, ..Default::default() };
    let cmd = if link { BPF_LINK_GET_FD_BY_ID } else { BPF_PROG_GET_FD_BY_ID };
    // SAFETY: no pointers.
    match unsafe { bpf(cmd, &mut attr) } {
        Ok(fd) => {
            drop(owned(fd)?);
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
