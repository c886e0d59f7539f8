//! Zero-copy target → browser: the payload of a frame moves target socket → pipe →
//! browser socket with `splice(2)`, never through user space.
//!
//! Only plain sockets can do this ([`RawSocket`] says which streams are); a TLS stream,
//! an in-memory stream or a filtered session stays on the pump's copy path. The pipe
//! exists only while bytes stream: it is made when the target is readable and released
//! when a splice from the target finds nothing and the pipe is empty, so an idle session
//! holds no pipe, as it holds no buffer.
//!
//! Everything is non-blocking: the pipe is `O_NONBLOCK`, every splice `SPLICE_F_NONBLOCK`,
//! and the sockets are waited for through tokio's readiness, as their reads and writes are.
//!
//! This module uses nothing else of the crate, so the stream types of `client` and
//! `target` can implement [`RawSocket`] without a circle of modules.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustix::net::SendFlags;
use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::{AsyncWrite, Interest};
use tokio::net::{TcpStream, UnixStream};

/// A pipe's capacity unless told otherwise (16 pages).
const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;

/// A plain socket under a stream type: what `splice(2)` can move bytes to and from.
#[derive(Debug, Clone, Copy)]
pub enum SocketRef<'a> {
    /// A TCP connection.
    Tcp(&'a TcpStream),
    /// A unix stream socket.
    Unix(&'a UnixStream),
}

/// Stream types that may be a plain socket, which the pump can splice.
pub trait RawSocket {
    /// The socket itself, if this stream is a plain one (`None` for TLS, in-memory or
    /// wrapped streams: their bytes must pass through user space).
    fn raw_socket(&self) -> Option<SocketRef<'_>>;
}

impl RawSocket for TcpStream {
    fn raw_socket(&self) -> Option<SocketRef<'_>> {
        Some(SocketRef::Tcp(self))
    }
}

impl RawSocket for UnixStream {
    fn raw_socket(&self) -> Option<SocketRef<'_>> {
        Some(SocketRef::Unix(self))
    }
}

impl SocketRef<'_> {
    fn poll_ready(self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        match (self, interest.is_readable()) {
            (Self::Tcp(s), true) => s.poll_read_ready(cx),
            (Self::Tcp(s), false) => s.poll_write_ready(cx),
            (Self::Unix(s), true) => s.poll_read_ready(cx),
            (Self::Unix(s), false) => s.poll_write_ready(cx),
        }
    }

    /// Runs `op` on the socket's descriptor; a `WouldBlock` clears tokio's readiness, so
    /// the next `poll_ready` waits for the socket again.
    fn try_io(
        self,
        interest: Interest,
        op: impl FnOnce(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_io(interest, || op(s.as_fd())),
            Self::Unix(s) => s.try_io(interest, || op(s.as_fd())),
        }
    }
}

impl SocketRef<'_> {
    /// Runs `op` once the socket is ready for `interest`, until it no longer would block.
    fn poll_io(
        self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_ready(cx, interest))?;
            match self.try_io(interest, &mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

/// Writes to a browser socket with `MSG_MORE`: what it takes (a frame header) waits in
/// the socket for the spliced payload instead of leaving as a segment of its own, which
/// `TCP_NODELAY` would otherwise send (and the peer process) for every frame.
#[derive(Debug)]
pub(crate) struct Corked<'a>(SocketRef<'a>);

impl AsyncWrite for Corked<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_io(cx, Interest::WRITABLE, |fd| {
            Ok(rustix::net::send(
                fd,
                buf,
                SendFlags::MORE | SendFlags::NOSIGNAL,
            )?)
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Why bytes could not be spliced from the target.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FillError {
    /// No pipe could be made, or the kernel will not splice these descriptors. Nothing
    /// was moved, so the copy path can take over.
    #[error("cannot splice here: {0}")]
    Unsupported(#[source] io::Error),
    /// The target connection failed.
    #[error("target read failed: {0}")]
    Io(#[source] io::Error),
}

/// The two ends of a non-blocking, close-on-exec pipe.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new(capacity: usize) -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        if capacity > DEFAULT_PIPE_CAPACITY {
            // A frame is at most what the pipe holds; without the room, frames are
            // smaller (the limit is /proc/sys/fs/pipe-max-size), never wrong.
            let _ = rustix::pipe::fcntl_setpipe_size(&write, capacity);
        }
        Ok(Self { read, write })
    }
}

/// Finds the socket under a stream type.
type SocketOf<T> = for<'a> fn(&'a T) -> Option<SocketRef<'a>>;

/// The splice state of a pump whose browser is a `C` and target a `B`: the pipe while
/// bytes stream, and how many bytes in it the current frame still has to send.
pub(crate) struct Splicer<C, B> {
    client: SocketOf<C>,
    target: SocketOf<B>,
    pipe: Option<Pipe>,
    /// Payload bytes in the pipe; the frame's header, which announced them, is written
    /// before any of them leaves.
    pending: usize,
}

impl<C, B> fmt::Debug for Splicer<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Splicer")
            .field("pipe", &self.pipe)
            .field("pending", &self.pending)
            .finish()
    }
}

impl<C: RawSocket, B: RawSocket> Splicer<C, B> {
    /// A splicer for `client` and `target`, if both are plain sockets.
    pub(crate) fn new(client: &C, target: &B) -> Option<Self> {
        (client.raw_socket().is_some() && target.raw_socket().is_some()).then_some(Self {
            client: C::raw_socket,
            target: B::raw_socket,
            pipe: None,
            pending: 0,
        })
    }
}

impl<C, B> Splicer<C, B> {
    /// Payload bytes in the pipe that still have to go to the browser.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Whether a pipe is held now.
    pub(crate) fn holds_pipe(&self) -> bool {
        self.pipe.is_some()
    }

    /// The browser's socket, written with `MSG_MORE`: for the header of a spliced frame.
    pub(crate) fn corked<'a>(&self, client: &'a C) -> io::Result<Corked<'a>> {
        (self.client)(client)
            .map(Corked)
            .ok_or_else(|| io::Error::other("not a socket"))
    }

    /// Lets the pipe go (the session is closing); nothing may be pending.
    pub(crate) fn release(&mut self) {
        debug_assert_eq!(self.pending, 0);
        self.pipe = None;
    }

    /// Splices up to `max` bytes from the target into the (empty) pipe. Ready with how
    /// many arrived, which the next frame announces; 0 is the target's end of stream.
    /// When the target has nothing, the pipe is released and the call is pending.
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        target: &B,
        max: usize,
    ) -> Poll<Result<usize, FillError>> {
        debug_assert_eq!(self.pending, 0);
        let socket = (self.target)(target).ok_or_else(not_a_socket)?;
        loop {
            // Readable first: an idle session makes no pipe.
            ready!(socket.poll_ready(cx, Interest::READABLE)).map_err(FillError::Io)?;
            if self.pipe.is_none() {
                self.pipe = Some(Pipe::new(max).map_err(FillError::Unsupported)?);
            }
            let pipe = self.pipe.as_ref().ok_or_else(not_a_socket)?;
            let moved = socket.try_io(Interest::READABLE, |fd| {
                Ok(splice(fd, None, &pipe.write, None, max, flags())?)
            });
            match moved {
                Ok(0) => {
                    self.pipe = None;
                    return Poll::Ready(Ok(0));
                }
                Ok(n) => {
                    self.pending = n;
                    return Poll::Ready(Ok(n));
                }
                // The pipe is empty, so this is the socket: nothing to read for now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pipe = None,
                Err(e) if unsupported(&e) => {
                    self.pipe = None;
                    return Poll::Ready(Err(FillError::Unsupported(e)));
                }
                Err(e) => return Poll::Ready(Err(FillError::Io(e))),
            }
        }
    }

    /// Splices pending bytes from the pipe to the browser, as far as it takes them.
    /// Ready with how many went (never 0); pending while the browser's socket is full.
    pub(crate) fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        client: &C,
    ) -> Poll<io::Result<usize>> {
        let socket = (self.client)(client).ok_or_else(|| io::Error::other("not a socket"))?;
        let pipe = self
            .pipe
            .as_ref()
            .ok_or_else(|| io::Error::other("spliced bytes without a pipe"))?;
        let pending = self.pending;
        // The pipe holds bytes, so a would-block is the socket: the browser is behind.
        let n = ready!(socket.poll_io(cx, Interest::WRITABLE, |fd| {
            Ok(splice(&pipe.read, None, fd, None, pending, flags())?)
        }))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.pending -= n;
        Poll::Ready(Ok(n))
    }
}

fn flags() -> SpliceFlags {
    SpliceFlags::NONBLOCK | SpliceFlags::MOVE
}

fn not_a_socket() -> FillError {
    FillError::Unsupported(io::Error::other("not a socket"))
}

/// Errors by which the kernel refuses to splice a pair of descriptors at all.
fn unsupported(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    [
        rustix::io::Errno::INVAL,
        rustix::io::Errno::NOSYS,
        rustix::io::Errno::OPNOTSUPP,
    ]
    .iter()
    .any(|errno| Some(errno.raw_os_error()) == code)
}
