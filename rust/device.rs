// SPDX-License-Identifier: GPL-2.0

//! `/dev/secmmu`: each open file is one device context. The ioctls are
//! those of `include/uapi/secmmu.h`; device reads and writes run on the
//! device engine (the module's workqueue), never in the caller's context,
//! so the device races the CPU as real hardware does.

use crate::{
    engine::{Binding, Dir},
    mm_bindings as b,
    shared::Shared,
    stats::{Stat, Stats},
    stream::Stream,
    tlb, SecMmuModule,
};
use core::mem::size_of;
use kernel::{
    debugfs,
    fs::File,
    ioctl::{_IO, _IOR, _IOW},
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    str::CString,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

// SAFETY: plain C structs of integers without padding (checked by the
// selftests' size and offset assertions against the same header): every
// bit pattern is valid and no byte is uninitialised.
unsafe impl FromBytes for b::secmmu_bind {}
// SAFETY: as above.
unsafe impl FromBytes for b::secmmu_access {}
// SAFETY: as above.
unsafe impl FromBytes for b::secmmu_stream {}
// SAFETY: as above.
unsafe impl AsBytes for b::secmmu_verify {}
// SAFETY: as above.
unsafe impl AsBytes for b::secmmu_stats {}

const MAGIC: u32 = b::SECMMU_IOC_MAGIC;
const BIND: u32 = _IOW::<b::secmmu_bind>(MAGIC, b::SECMMU_IOC_NR_BIND);
const UNBIND: u32 = _IO(MAGIC, b::SECMMU_IOC_NR_UNBIND);
const WRITE: u32 = _IOW::<b::secmmu_access>(MAGIC, b::SECMMU_IOC_NR_WRITE);
const READ: u32 = _IOW::<b::secmmu_access>(MAGIC, b::SECMMU_IOC_NR_READ);
const STREAM_START: u32 = _IOW::<b::secmmu_stream>(MAGIC, b::SECMMU_IOC_NR_STREAM_START);
const STREAM_STOP: u32 = _IO(MAGIC, b::SECMMU_IOC_NR_STREAM_STOP);
const STREAM_VERIFY: u32 = _IOR::<b::secmmu_verify>(MAGIC, b::SECMMU_IOC_NR_STREAM_VERIFY);
const TLB_FLUSH: u32 = _IO(MAGIC, b::SECMMU_IOC_NR_TLB_FLUSH);
const GET_STATS: u32 = _IOR::<b::secmmu_stats>(MAGIC, b::SECMMU_IOC_NR_GET_STATS);

/// Next context id (the `ctx/<id>` debugfs directory).
static NEXT_ID: Atomic<u32> = Atomic::new(1);

/// The debugfs files of a bound context.
struct CtxDebugfs {
    _stats: Pin<KBox<debugfs::File<Arc<Stats>>>>,
    _dir: debugfs::Dir,
}

/// What a context is doing, behind its mutex.
struct State {
    binding: Option<Arc<Binding>>,
    stream: Option<Arc<Stream>>,
    debugfs: Option<CtxDebugfs>,
}

/// One open `/dev/secmmu`.
#[pin_data]
pub(crate) struct Context {
    id: u32,
    stats: Arc<Stats>,
    shared: Arc<Shared>,
    ctx_dir: debugfs::Dir,
    #[pin]
    state: Mutex<State>,
}

fn read_arg<T: FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .reader()
        .read::<T>()
}

fn write_arg<T: AsBytes>(arg: usize, v: &T) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .writer()
        .write(v)
}

fn show_stats(s: &Arc<Stats>, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    s.show(f)
}

impl Context {
    fn bind(&self, arg: usize) -> Result<isize> {
        let req: b::secmmu_bind = read_arg(arg)?;
        if req.flags != 0 || req.tlb_entries as usize > tlb::MAX_CAPACITY {
            return Err(EINVAL);
        }
        let capacity = match req.tlb_entries {
            0 => tlb::DEFAULT_CAPACITY,
            n => n as usize,
        };
        let mut st = self.state.lock();
        if st.binding.is_some() {
            return Err(EBUSY);
        }
        let binding = Binding::new(capacity, self.stats.clone(), self.shared.clone(), self.id)?;
        let name = CString::try_from_fmt(fmt!("{}", self.id))?;
        let dir = self.ctx_dir.subdir(&name);
        let file = KBox::pin_init(
            dir.read_callback_file(c"stats", self.stats.clone(), &show_stats),
            GFP_KERNEL,
        )?;
        // Last, so that nothing can fail after the helper can see it.
        self.shared.register(binding.clone())?;
        st.debugfs = Some(CtxDebugfs {
            _stats: file,
            _dir: dir,
        });
        st.binding = Some(binding);
        self.stats.inc(Stat::BINDS);
        Ok(0)
    }

    /// Stops the stream and drops the binding; `Ok(false)` if unbound.
    fn unbind_locked(&self, st: &mut State) -> bool {
        if let Some(stream) = st.stream.take() {
            // A caller killed meanwhile stops waiting: the stream ends at
            // its next write on its own, holding its own references.
            let _ = stream.stop();
        }
        st.debugfs = None;
        match st.binding.take() {
            Some(binding) => {
                self.shared.unregister(&binding);
                // The last reference unregisters the notifier; engine work
                // holds its own until it is done.
                drop(binding);
                self.stats.inc(Stat::UNBINDS);
                true
            }
            None => false,
        }
    }

    fn bound(&self) -> Result<Arc<Binding>> {
        self.state.lock().binding.clone().ok_or(ENOTCONN)
    }

    fn access(&self, arg: usize, dir: Dir) -> Result<isize> {
        let req: b::secmmu_access = read_arg(arg)?;
        let len = usize::try_from(req.len).map_err(|_| EINVAL)?;
        let addr = usize::try_from(req.addr).map_err(|_| EFAULT)?;
        if req.flags != 0 || req.pad != 0 || len == 0 || len > b::SECMMU_MAX_ACCESS as usize {
            return Err(EINVAL);
        }
        addr.checked_add(len).ok_or(EFAULT)?;
        let binding = self.bound()?;
        binding.check_range(addr, len)?;
        if dir == Dir::Write && req.user_buf == 0 {
            // A fill: no bounce buffer, the engine writes the value.
            if addr % 8 != 0 || len % 8 != 0 {
                return Err(EINVAL);
            }
            crate::job::run_fill(binding, addr, len, req.value)?;
            return Ok(0);
        }
        let mut buf = KVVec::<u8>::with_capacity(len, GFP_KERNEL)?;
        buf.resize(len, 0, GFP_KERNEL)?;
        let user = UserPtr::from_addr(usize::try_from(req.user_buf).map_err(|_| EFAULT)?);
        match dir {
            Dir::Write => UserSlice::new(user, len).reader().read_slice(&mut buf)?,
            Dir::Read if req.user_buf == 0 => return Err(EFAULT),
            Dir::Read => {}
        }
        let buf = crate::job::run(binding, addr, buf, dir)?;
        if dir == Dir::Read {
            UserSlice::new(user, len).writer().write_slice(&buf)?;
        }
        Ok(0)
    }

    fn stream_start(&self, arg: usize) -> Result<isize> {
        let req: b::secmmu_stream = read_arg(arg)?;
        let mut st = self.state.lock();
        let binding = st.binding.clone().ok_or(ENOTCONN)?;
        if let Some(old) = st.stream.as_ref() {
            if old.is_running() {
                return Err(EBUSY);
            }
            // Stopped, to be replaced: wait until the engine is done with it
            // so that none of its writes lands after the new stream's.
            old.stop()?;
        }
        st.stream = Some(Stream::start(binding, &req)?);
        Ok(0)
    }

    fn stream_stop(&self) -> Result<isize> {
        let st = self.state.lock();
        let stream = st.stream.as_ref().ok_or(ENOENT)?;
        stream.stop()?;
        // Report the device fault that stopped the stream, if one did.
        stream.error()?;
        Ok(0)
    }

    fn stream_verify(&self, arg: usize) -> Result<isize> {
        let st = self.state.lock();
        let binding = st.binding.as_ref().ok_or(ENOTCONN)?;
        let stream = st.stream.as_ref().ok_or(ENOENT)?;
        if !binding.is_current_mm() {
            // The check reads the slots as the CPU sees them: from the mm.
            return Err(EPERM);
        }
        let v = stream.verify()?;
        write_arg(arg, &v)?;
        Ok(0)
    }

    fn get_stats(&self, arg: usize) -> Result<isize> {
        let (entries, capacity) = match self.state.lock().binding.as_ref() {
            Some(bnd) => bnd.tlb_usage(),
            None => (0, 0),
        };
        let out = b::secmmu_stats {
            counters: self.stats.snapshot(),
            tlb_entries: entries as u32,
            tlb_capacity: capacity as u32,
            ctx_id: self.id,
            pad: 0,
        };
        write_arg(arg, &out)?;
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for Context {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let module = SecMmuModule::from_misc(misc);
        KBox::try_pin_init(
            try_pin_init!(Context {
                id: NEXT_ID.fetch_add(1, Relaxed),
                stats: Arc::new(Stats::new(), GFP_KERNEL)?,
                shared: module.shared().clone(),
                ctx_dir: module.ctx_dir().clone(),
                state <- new_mutex!(State {
                    binding: None,
                    stream: None,
                    debugfs: None,
                }),
            }),
            GFP_KERNEL,
        )
    }

    fn release(ctx: Pin<KBox<Self>>, _file: &File) {
        let mut st = ctx.state.lock();
        ctx.unbind_locked(&mut st);
        drop(st);
        drop(ctx);
    }

    fn ioctl(ctx: Pin<&Self>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            BIND => ctx.bind(arg),
            UNBIND => {
                let mut st = ctx.state.lock();
                if ctx.unbind_locked(&mut st) {
                    Ok(0)
                } else {
                    Err(ENOTCONN)
                }
            }
            WRITE => ctx.access(arg, Dir::Write),
            READ => ctx.access(arg, Dir::Read),
            STREAM_START => ctx.stream_start(arg),
            STREAM_STOP => ctx.stream_stop(),
            STREAM_VERIFY => ctx.stream_verify(arg),
            TLB_FLUSH => {
                ctx.bound()?.flush();
                Ok(0)
            }
            GET_STATS => ctx.get_stats(arg),
            _ => Err(ENOTTY),
        }
    }
}
