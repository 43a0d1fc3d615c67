//! The user-space buffer of one direction, for when splice(2) is off or
//! unavailable. Like the pipes, a buffer exists only while a burst is in
//! flight, so an idle connection holds no memory for it.

/// Bytes read from the source in one call; also bounds what one write sends.
pub(super) const BUFFER_SIZE: usize = 64 * 1024;

/// A thin pointer (the size is in the type), to keep the per-connection
/// state small.
pub(super) type Buffer = Box<[u8; BUFFER_SIZE]>;

pub(super) fn new_buffer() -> Buffer {
    // Through a Vec, so the 64 KiB never sit on the stack.
    vec![0u8; BUFFER_SIZE]
        .into_boxed_slice()
        .try_into()
        .expect("the Vec has BUFFER_SIZE bytes")
}
