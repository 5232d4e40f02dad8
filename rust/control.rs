// SPDX-License-Identifier: GPL-2.0

//! The debugfs control files: `migrate_thp`, `inject`, `events`,
//! `invalidate_hist` and `bench_fill`.

use crate::{bench, histogram, migrate, shared::Shared};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::Arc,
    uaccess::UserSliceReader,
};

/// The control files; removed when dropped.
#[pin_data]
pub(crate) struct Files {
    #[pin]
    _migrate: File<Arc<Shared>>,
    #[pin]
    _inject: File<Arc<Shared>>,
    #[pin]
    _events: File<Arc<Shared>>,
    #[pin]
    _hist: File<Arc<Shared>>,
    #[pin]
    _bench: File<Arc<Shared>>,
}

impl Files {
    /// Creates the control files in `dir`.
    pub(crate) fn new(dir: &Dir, s: &Arc<Shared>) -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(
            try_pin_init!(Self {
                _migrate <- dir.read_write_callback_file(
                    c"migrate_thp",
                    s.clone(),
                    &show_migrate,
                    &write_migrate,
                ),
                _inject <- dir.read_write_callback_file(
                    c"inject",
                    s.clone(),
                    &show_inject,
                    &write_inject,
                ),
                _events <- dir.read_write_callback_file(
                    c"events",
                    s.clone(),
                    &show_events,
                    &write_events,
                ),
                _hist <- dir.read_write_callback_file(
                    c"invalidate_hist",
                    s.clone(),
                    &show_hist,
                    &write_hist,
                ),
                _bench <- dir.read_write_callback_file(
                    c"bench_fill",
                    s.clone(),
                    &show_bench,
                    &bench::write,
                ),
            }),
            GFP_KERNEL,
        )
    }
}

/// Longest line the `inject` and `events` files accept.
const MAX_LINE: usize = 64;

/// Reads a short text line written to a debugfs file, without its
/// trailing newline.
fn read_line<'a>(reader: &mut UserSliceReader, buf: &'a mut [u8; MAX_LINE]) -> Result<&'a str> {
    let len = reader.len();
    if len == 0 || len > MAX_LINE {
        return Err(EINVAL);
    }
    let line = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(line)?;
    let text = core::str::from_utf8(line).map_err(|_| EINVAL)?;
    Ok(text.strip_suffix('\n').unwrap_or(text))
}

/// Reading `migrate_thp`: the last result.
pub(crate) fn show_migrate(s: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    s.helper.lock().show(f)
}

/// Writing `migrate_thp`: `PID ADDR NODE [unhardened]`, run synchronously.
pub(crate) fn write_migrate(s: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let req = migrate::read_request(reader).inspect_err(|_| {
        pr_info!("migrate_thp: expected 'PID ADDR NODE [unhardened]'\n");
    })?;
    let mut last = s.helper.lock();
    migrate::migrate_thp(s, req, &mut last)
}

/// Reading `inject`: the settings, one `name=value` per line.
pub(crate) fn show_inject(s: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "late_invalidate={}", s.late_invalidate_us())?;
    writeln!(f, "corrupt_copy={}", u8::from(s.corrupt_copy()))?;
    writeln!(f, "skip_invalidate={}", u8::from(s.skip_invalidate()))
}

/// A `0` or `1` injection value.
fn parse_bool(value: &str) -> Result<bool> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(EINVAL),
    }
}

/// Size of the object a `leak_object=1` write leaks.
const LEAK_SIZE: usize = 96;

/// Writing `inject`: `late_invalidate=<microseconds>` (0: off),
/// `corrupt_copy=<0|1>`, `skip_invalidate=<0|1>` (every device ignores the
/// kernel's invalidations: the oracles' self-tests), or `leak_object=1`, which allocates one object and
/// drops the only pointer to it: the self-test of the suite's kmemleak check.
pub(crate) fn write_inject(s: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; MAX_LINE];
    let line = read_line(reader, &mut buf)?;
    let (name, value) = line.split_once('=').ok_or(EINVAL)?;
    match name {
        "late_invalidate" => s.set_late_invalidate_us(value.parse::<u64>().map_err(|_| EINVAL)?),
        "corrupt_copy" => {
            s.set_corrupt_copy(parse_bool(value)?);
            Ok(())
        }
        "skip_invalidate" => {
            s.set_skip_invalidate(parse_bool(value)?);
            Ok(())
        }
        "leak_object" if value == "1" => {
            KBox::leak(KBox::new([0x5au8; LEAK_SIZE], GFP_KERNEL)?);
            pr_info!("inject: leaked one {LEAK_SIZE}-byte object for kmemleak to find\n");
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

/// Reading `events`: the log.
pub(crate) fn show_events(s: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    s.events.show(f)
}

/// Writing `events`: `clear`.
pub(crate) fn write_events(s: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; MAX_LINE];
    match read_line(reader, &mut buf)? {
        "clear" => {
            s.events.clear();
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

/// Reading `invalidate_hist`: the callback-duration histogram.
pub(crate) fn show_hist(_s: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    histogram::INVALIDATE.show(f)
}

/// Writing `invalidate_hist`: `clear`.
pub(crate) fn write_hist(_s: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; MAX_LINE];
    match read_line(reader, &mut buf)? {
        "clear" => {
            histogram::INVALIDATE.clear();
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

/// Reading `bench_fill`: the last result.
pub(crate) fn show_bench(s: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    s.bench.lock().show(f)
}
