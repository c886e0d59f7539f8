//! `darts-load relay`: the zero-copy reference gateway. A raw TCP relay (no websocket
//! framing, no RFB) that moves every byte with `splice(2)`, socket → pipe → socket, one
//! pipe per direction: the least CPU a relay driven from user space spends per byte,
//! which darts' own splice path is compared with.

use std::io;
use std::net::SocketAddr;

use rustix::net::Shutdown;
use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

/// Largest splice into a pipe; the pipe's default capacity.
const CHUNK: usize = 64 * 1024;

/// Accepts connections on `listen` and relays each one to `target` until killed.
pub async fn serve(listen: SocketAddr, target: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(backend) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = backend.set_nodelay(true);
            // Either direction ending (or failing) ends the connection with it.
            let _ = tokio::join!(one_way(&client, &backend), one_way(&backend, &client));
        });
    }
}

/// `from` → `to` until `from` ends, then the write side of `to` is shut.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        from.readable().await?;
        let moved = from.try_io(Interest::READABLE, || {
            Ok(splice(from, None, &pipe_in, None, CHUNK, flags)?)
        });
        let mut left = match moved {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe_out, None, to, None, left, flags)?)
            }) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    rustix::net::shutdown(to, Shutdown::Write)?;
    Ok(())
}
