//! Tracepoints as perf events: one event per tracepoint per online CPU
//! (pid -1, cpu N), each with its kernel-side filter, every CPU's events
//! writing into one mmap'd ring of that CPU (PERF_EVENT_IOC_SET_OUTPUT),
//! the rings polled as one descriptor (an epoll set). Records are
//! PERF_RECORD_SAMPLE (TID | TIME | CPU | RAW) and PERF_RECORD_LOST, which
//! says how many samples the kernel had no room for: counted in
//! [`TraceReader::lost`], never dropped silently.
//!
//! Nothing outlives the reader: a perf event is the kernel's object of
//! its descriptor, removed when the last descriptor closes, which the
//! kernel does on drop, on exit and on SIGKILL alike. No tracefs file is
//! written (enable, filter), so the host's tracing state is not touched.

use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use perf_event_open_sys as sys;
use sys::bindings as b;

use super::error::TraceError;
use super::event::{parse_sample, Sample};
use super::format::Format;

/// One tracepoint to listen to.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `skb`, `tcp`, `sock`: for messages.
    pub group: &'a str,
    pub format: &'a Format,
    /// A tracepoint filter expression (`reason == 3 && protocol == 0x800`)
    /// the kernel applies before a sample is written; None for all.
    pub filter: Option<&'a str>,
}

/// Ring sizes and wake-ups.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Data pages per CPU, a power of two (128: 512 KiB with 4 KiB pages,
    /// about 6500 kfree_skb samples).
    pub pages: usize,
    /// Wake a poller once this many bytes wait (0: on every sample); at
    /// most half the ring (more is cut to a quarter). Whatever waits is
    /// read on every [`TraceReader::read_waiting`], so a caller polling
    /// with a timeout sees a quiet stream at its tick (poll at 100 ms or
    /// less). Waking on every sample costs the traced path a wake-up per
    /// event: 300,000 drops of a UDP flood took the sending thread 4.96 s
    /// of CPU that way, 1.80 s with a quarter-ring mark, 1.61-1.77 s under
    /// bpftrace's in-kernel count and 1.50 s untraced (issue 30's report).
    pub wakeup_bytes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { pages: 128, wakeup_bytes: 128 << 10 }
    }
}

/// Filter expressions are a few dozen bytes; the kernel's own limit is a
/// page.
const MAX_FILTER: usize = 4096;

/// The CPUs in a cpu list such as /sys/devices/system/cpu/online's
/// (`0-3,5,8-9`); None if the text is not one. At most 1<<16 CPUs.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => (part.parse::<u32>().ok()?, part.parse::<u32>().ok()?),
        };
        if lo > hi || hi >= 1 << 16 || cpus.len() + (hi - lo) as usize >= 1 << 16 {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    (!cpus.is_empty()).then_some(cpus)
}

fn online_cpus() -> Result<Vec<u32>, TraceError> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path).map_err(|e| TraceError::sys(format!("reading {path}"), e))?;
    parse_cpu_list(&text).ok_or_else(|| TraceError::Format { path: path.into(), msg: format!("{text:?}").into() })
}

/// One CPU's ring: the metadata page and 2^n data pages, shared with the
/// kernel, which writes records at `data_head` while sockql reads from
/// `data_tail` up to it and then moves `data_tail` on.
struct Ring {
    cpu: u32,
    /// The descriptor the ring is mapped from (the CPU's first event).
    fd: OwnedFd,
    base: NonNull<std::ffi::c_void>,
    len: usize,
    data_offset: usize,
    data_size: usize,
}

// The mapping belongs to this value alone; the kernel's side of it is
// synchronised through data_head/data_tail.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping made in Ring::map, unmapped once.
        unsafe {
            let _ = munmap(self.base, self.len);
        }
    }
}

impl Ring {
    fn map(cpu: u32, fd: OwnedFd, pages: usize) -> Result<Ring, TraceError> {
        let page = page_size();
        let len = page
            .checked_mul(pages.saturating_add(1))
            .and_then(std::num::NonZeroUsize::new)
            .ok_or_else(|| TraceError::sys("ring size", std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: a new shared mapping of the perf descriptor; nothing
        // else refers to the address range.
        let base = unsafe {
            mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd.as_fd(), 0)
        }
        .map_err(|e| TraceError::sys(format!("mmap of the ring of CPU {cpu} ({} KiB)", len.get() >> 10), e))?;
        let mut ring = Ring { cpu, fd, base, len: len.get(), data_offset: page, data_size: len.get() - page };
        // SAFETY: the first page is the kernel's perf_event_mmap_page.
        let (offset, size) = unsafe {
            let meta = ring.meta();
            ((*meta).data_offset as usize, (*meta).data_size as usize)
        };
        // Kernels since 4.1 say where data is; older ones leave zeros.
        if size != 0 && offset.checked_add(size) == Some(ring.len) && size.is_power_of_two() {
            (ring.data_offset, ring.data_size) = (offset, size);
        }
        Ok(ring)
    }

    fn meta(&self) -> *mut b::perf_event_mmap_page {
        self.base.as_ptr().cast()
    }

    fn head_tail(&self) -> (&AtomicU64, &AtomicU64) {
        // SAFETY: data_head and data_tail are aligned u64s of the mapped
        // metadata page, alive as long as self; the kernel writes head and
        // reads tail concurrently, hence atomics.
        unsafe {
            let meta = self.meta();
            (
                AtomicU64::from_ptr(std::ptr::addr_of_mut!((*meta).data_head)),
                AtomicU64::from_ptr(std::ptr::addr_of_mut!((*meta).data_tail)),
            )
        }
    }

    /// Copy `out.len()` bytes from ring position `pos` (wrapping).
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let size = self.data_size;
        let start = (pos % size as u64) as usize;
        let first = out.len().min(size - start);
        // SAFETY: both ranges lie within the data area (start < size,
        // first <= size - start, the rest < size since out.len() <= size),
        // which the kernel does not write between data_tail and data_head.
        unsafe {
            let data = self.base.as_ptr().cast::<u8>().add(self.data_offset);
            std::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Hand the records waiting to `on_record` (type, body after the
    /// header); returns Break if it did.
    fn drain(
        &self,
        scratch: &mut Vec<u8>,
        on_record: &mut dyn FnMut(u32, &[u8]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (head_at, tail_at) = self.head_tail();
        // Acquire: the record bytes the kernel wrote before moving head
        // are visible before they are read (the smp_rmb of perf's docs).
        let head = head_at.load(Ordering::Acquire);
        let mut tail = tail_at.load(Ordering::Relaxed);
        let mut flow = ControlFlow::Continue(());
        while head.wrapping_sub(tail) >= 8 && flow.is_continue() {
            let waiting = head.wrapping_sub(tail);
            let mut header = [0u8; 8];
            self.copy_out(tail, &mut header);
            let kind = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
            let size = u16::from_ne_bytes([header[6], header[7]]) as u64;
            if size < 8 || size > waiting || size as usize > self.data_size {
                // Not a record: skip what is there rather than loop.
                tail = head;
                break;
            }
            scratch.resize(size as usize, 0);
            self.copy_out(tail, scratch);
            tail = tail.wrapping_add(size);
            flow = on_record(kind, scratch.get(8..).unwrap_or_default());
        }
        // Release: the reads above are done before the kernel may
        // overwrite the space (the smp_mb before writing data_tail).
        tail_at.store(tail, Ordering::Release);
        flow
    }
}

/// Tracepoints being listened to on every online CPU.
pub struct TraceReader {
    rings: Vec<Ring>,
    /// Events whose output goes to their CPU's ring (the first event of a
    /// CPU is the ring's own fd).
    others: Vec<OwnedFd>,
    epoll: Epoll,
    lost: u64,
    /// Records the reader could not make sense of (none expected).
    malformed: u64,
    scratch: Vec<u8>,
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as usize
}

fn open_event(format: &Format, cpu: u32, opts: &Options) -> std::io::Result<OwnedFd> {
    open_perf(b::PERF_TYPE_TRACEPOINT, format.id, cpu, opts)
}

/// A perf event of `type_`/`config` on `cpu`, sampling every event with
/// TID, TIME, CPU and RAW (a tracepoint's record, or what a BPF program
/// wrote with bpf_perf_event_output).
fn open_perf(type_: u32, config: u64, cpu: u32, opts: &Options) -> std::io::Result<OwnedFd> {
    // SAFETY: an all-zero perf_event_attr is its documented default.
    let mut attr: b::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = type_;
    attr.size = std::mem::size_of::<b::perf_event_attr>() as u32;
    attr.config = config;
    attr.__bindgen_anon_1.sample_period = 1;
    attr.sample_type = (b::PERF_SAMPLE_TID | b::PERF_SAMPLE_TIME | b::PERF_SAMPLE_CPU | b::PERF_SAMPLE_RAW) as u64;
    // read() gives the event's count and its lost_samples: the samples the
    // kernel had no room for, counted as they are lost (Linux 6.0+). The
    // ring's PERF_RECORD_LOST says so only with the next record written to
    // it, which never comes after the last of a flood: see
    // [`TraceReader::lost`].
    attr.read_format = b::PERF_FORMAT_LOST as u64;
    attr.set_disabled(1);
    // Times on CLOCK_MONOTONIC, as proc_events and the other stream
    // readers stamp theirs.
    attr.set_use_clockid(1);
    attr.clockid = libc::CLOCK_MONOTONIC;
    if opts.wakeup_bytes > 0 {
        let data = opts.pages.saturating_mul(page_size());
        let mark = opts.wakeup_bytes as usize;
        attr.set_watermark(1);
        attr.__bindgen_anon_2.wakeup_watermark = if mark > data / 2 { data / 4 } else { mark }.max(1) as u32;
    } else {
        attr.__bindgen_anon_2.wakeup_events = 1;
    }
    // SAFETY: attr is a valid perf_event_attr of the size it says.
    let mut fd = unsafe { sys::perf_event_open(&mut attr, -1, cpu as i32, -1, b::PERF_FLAG_FD_CLOEXEC as _) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // A kernel before 6.0 refuses PERF_FORMAT_LOST: without it, only
        // the PERF_RECORD_LOST records count losses.
        attr.read_format = 0;
        // SAFETY: as above.
        fd = unsafe { sys::perf_event_open(&mut attr, -1, cpu as i32, -1, b::PERF_FLAG_FD_CLOEXEC as _) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the call just returned, owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl_result(r: i32) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl TraceReader {
    /// Open every request on every online CPU with its filter, and start.
    pub fn open(requests: &[Request<'_>], opts: Options) -> Result<TraceReader, TraceError> {
        if requests.is_empty() || !opts.pages.is_power_of_two() || opts.pages > 1 << 14 {
            return Err(TraceError::sys("open", std::io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let filters = requests
            .iter()
            .map(|r| {
                r.filter
                    .map(|f| {
                        let bad = |e| TraceError::Filter {
                            event: format!("{}:{}", r.group, r.format.name).into(),
                            filter: f.into(),
                            source: std::io::Error::from_raw_os_error(e),
                        };
                        if f.len() > MAX_FILTER {
                            return Err(bad(libc::E2BIG));
                        }
                        std::ffi::CString::new(f).map_err(|_| bad(libc::EINVAL))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| TraceError::sys("epoll_create", e))?;
        let mut reader =
            TraceReader { rings: Vec::new(), others: Vec::new(), epoll, lost: 0, malformed: 0, scratch: Vec::new() };
        for cpu in online_cpus()? {
            let mut ring_fd: Option<RawFd> = None;
            for (r, filter) in requests.iter().zip(&filters) {
                let name = format!("{}:{}", r.group, r.format.name);
                let fd = open_event(r.format, cpu, &opts)
                    .map_err(|e| TraceError::sys(format!("{name}: perf_event_open on CPU {cpu}"), e))?;
                if let Some(f) = filter {
                    // SAFETY: a perf fd and a NUL-terminated string the
                    // kernel copies.
                    ioctl_result(unsafe { sys::ioctls::SET_FILTER(fd.as_raw_fd(), f.as_ptr() as *mut _) }).map_err(
                        |source| TraceError::Filter {
                            event: name.clone().into(),
                            filter: f.to_string_lossy().into(),
                            source,
                        },
                    )?;
                }
                match ring_fd {
                    None => {
                        ring_fd = Some(fd.as_raw_fd());
                        let ring = Ring::map(cpu, fd, opts.pages)?;
                        reader
                            .epoll
                            .add(&ring.fd, EpollEvent::new(EpollFlags::EPOLLIN, cpu as u64))
                            .map_err(|e| TraceError::sys("epoll_ctl", e))?;
                        reader.rings.push(ring);
                    }
                    Some(out) => {
                        // SAFETY: two perf fds of the same CPU.
                        ioctl_result(unsafe { sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), out) })
                            .map_err(|e| TraceError::sys(format!("{name}: SET_OUTPUT on CPU {cpu}"), e))?;
                        reader.others.push(fd);
                    }
                }
            }
        }
        for fd in reader.rings.iter().map(|r| &r.fd).chain(&reader.others) {
            // SAFETY: a perf fd.
            ioctl_result(unsafe { sys::ioctls::ENABLE(fd.as_raw_fd(), 0) })
                .map_err(|e| TraceError::sys("PERF_EVENT_IOC_ENABLE", e))?;
        }
        Ok(reader)
    }

    /// One PERF_COUNT_SW_BPF_OUTPUT event with its ring per online CPU,
    /// for a BPF program's bpf_perf_event_output (the BPF reader puts
    /// [`TraceReader::cpu_fds`] in its perf event array): read, polled and
    /// loss-counted as tracepoint rings are.
    pub fn bpf_outputs(opts: Options) -> Result<TraceReader, TraceError> {
        if !opts.pages.is_power_of_two() || opts.pages > 1 << 14 {
            return Err(TraceError::sys("open", std::io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| TraceError::sys("epoll_create", e))?;
        let mut reader =
            TraceReader { rings: Vec::new(), others: Vec::new(), epoll, lost: 0, malformed: 0, scratch: Vec::new() };
        for cpu in online_cpus()? {
            let fd = open_perf(b::PERF_TYPE_SOFTWARE, b::PERF_COUNT_SW_BPF_OUTPUT as u64, cpu, &opts)
                .map_err(|e| TraceError::sys(format!("BPF output: perf_event_open on CPU {cpu}"), e))?;
            let ring = Ring::map(cpu, fd, opts.pages)?;
            reader
                .epoll
                .add(&ring.fd, EpollEvent::new(EpollFlags::EPOLLIN, cpu as u64))
                .map_err(|e| TraceError::sys("epoll_ctl", e))?;
            // SAFETY: a perf fd.
            ioctl_result(unsafe { sys::ioctls::ENABLE(ring.fd.as_raw_fd(), 0) })
                .map_err(|e| TraceError::sys("PERF_EVENT_IOC_ENABLE", e))?;
            reader.rings.push(ring);
        }
        Ok(reader)
    }

    /// One descriptor to poll: readable when any CPU's ring has reached
    /// its wake-up mark.
    pub fn raw_fd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }

    /// The per-CPU ring descriptors (for `/proc/PID/fdinfo` checks and
    /// callers that poll them directly).
    pub fn cpu_fds(&self) -> Vec<(u32, RawFd)> {
        self.rings.iter().map(|r| (r.cpu, r.fd.as_raw_fd())).collect()
    }

    /// Samples the kernel had no room for in a ring, so far: the sum of
    /// every event's lost_samples as read() gives it now (Linux 6.0+),
    /// else the PERF_RECORD_LOST records read so far. The records alone
    /// are not enough: the kernel writes one only with the next sample
    /// that finds room in that ring, so the samples lost at the end of a
    /// flood (the ring full, nothing after) would go uncounted, a silent
    /// loss. Read before a ring is drained, it also counts the samples
    /// lost while the ones drained waited in it.
    pub fn lost(&self) -> u64 {
        self.lost.max(self.kernel_lost())
    }

    /// The sum of the events' lost_samples (0 where read() does not give it).
    fn kernel_lost(&self) -> u64 {
        let counted = self.rings.iter().map(|r| &r.fd).chain(&self.others).map(|fd| {
            // value, lost (read_format = PERF_FORMAT_LOST); 8 bytes: a
            // kernel without it.
            let mut buf = [0u8; 16];
            match nix::unistd::read(fd, &mut buf) {
                Ok(16) => buf.get(8..16).and_then(|b| b.try_into().ok()).map_or(0, u64::from_ne_bytes),
                _ => 0,
            }
        });
        counted.fold(0u64, u64::saturating_add)
    }

    /// Records that were not samples sockql could read.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Hand every sample waiting in every CPU's ring to `on_sample`,
    /// without waiting for more; stops early when it breaks. Samples of
    /// one CPU come in order; CPUs are read one after another.
    pub fn read_waiting(
        &mut self,
        mut on_sample: impl FnMut(&Sample<'_>) -> ControlFlow<()>,
    ) -> Result<(), TraceError> {
        let (mut lost, mut malformed) = (0u64, 0u64);
        let mut on_record = |kind: u32, body: &[u8]| match kind {
            b::PERF_RECORD_SAMPLE => match parse_sample(body) {
                Some(s) => on_sample(&s),
                None => {
                    malformed += 1;
                    ControlFlow::Continue(())
                }
            },
            b::PERF_RECORD_LOST => {
                // id (u64), lost (u64).
                match body.get(8..16).and_then(|b| b.try_into().ok()) {
                    Some(n) => lost = lost.saturating_add(u64::from_ne_bytes(n)),
                    None => malformed += 1,
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        };
        for ring in &self.rings {
            if ring.drain(&mut self.scratch, &mut on_record).is_break() {
                break;
            }
        }
        self.lost = self.lost.saturating_add(lost);
        self.malformed = self.malformed.saturating_add(malformed);
        Ok(())
    }

    /// Wait up to `timeout_ms` for a ring to become readable.
    pub fn wait(&self, timeout_ms: u16) -> Result<bool, TraceError> {
        let mut events = [EpollEvent::empty(); 4];
        match self.epoll.wait(&mut events, timeout_ms) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(TraceError::sys("epoll_wait", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        for bad in ["", "x", "3-1", "0-99999999", "1,,a", "-"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }
}
