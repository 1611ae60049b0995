//! Registering sockets with the event loop: for reading only, and a parked socket's
//! duplicate for writing.

use super::*;

/// How soon a parked socket is tried again when no duplicate of its descriptor could be made.
pub(super) const RETRY_WITHOUT_DUPLICATE: Duration = Duration::from_millis(10);

/// A duplicate of a parked socket's descriptor, registered for writing only (the socket's
/// own registration is for reading): dropped, with its registration, once the socket is
/// written out or let go.
pub(super) fn writer_of(socket: &Socket) -> Option<AsyncFd<std::net::TcpStream>> {
    let duplicate = socket.get_ref().try_clone().ok()?;
    register(duplicate, tokio::io::Interest::WRITABLE).ok()
}

/// Registers `socket` with the event loop for `interest` only: a client's socket for
/// reading ([`Socket`]), a parked one's duplicate for writing.
pub fn register(
    socket: std::net::TcpStream,
    interest: tokio::io::Interest,
) -> std::io::Result<AsyncFd<std::net::TcpStream>> {
    // The safe registration is deprecated in favour of an unsafe one (which this workspace
    // forbids); what the unsafe one asks holds here: the TcpStream owns its descriptor for
    // the AsyncFd's whole life.
    #[allow(deprecated)]
    AsyncFd::with_interest(socket, interest)
}
