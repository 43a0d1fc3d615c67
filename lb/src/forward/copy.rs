//! One direction through a user-space buffer, for when splice(2) is off or
//! unavailable. Like the pipes, the buffer exists only while a burst is in
//! flight, so an idle connection holds no memory for it.

use std::io;

use super::{Ctx, Direction, ForwardError};

const BUFFER_SIZE: usize = 64 * 1024;

pub(super) async fn pump(
    dir: &Direction<'_>,
    ctx: &Ctx<'_>,
    total: &mut u64,
) -> Result<(), ForwardError> {
    let mut buffer: Option<Box<[u8]>> = None;
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        if start == end {
            dir.src.readable().await.map_err(|e| dir.read_error(e))?;
            let buf = buffer.get_or_insert_with(|| vec![0u8; BUFFER_SIZE].into_boxed_slice());
            match dir.src.try_read(buf) {
                Ok(0) => return Ok(()),
                Ok(n) => (start, end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => buffer = None,
                Err(e) => return Err(dir.read_error(e)),
            }
        } else {
            let buf = buffer.as_ref().expect("pending bytes imply a buffer");
            match dir.dst.try_write(&buf[start..end]) {
                Ok(0) => return Err(dir.write_error(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    start += n;
                    *total += n as u64;
                    ctx.delivered(dir.to, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dir.dst.writable().await.map_err(|e| dir.write_error(e))?;
                }
                Err(e) => return Err(dir.write_error(e)),
            }
        }
    }
}
