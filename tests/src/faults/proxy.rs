//! A TCP proxy on loopback between a Kafka client and one broker, which the
//! fault driver can cut like a network.
//!
//! A Kafka client only bootstraps through the address it is given: after the
//! first metadata answer it connects to the address the broker advertises. So
//! the proxy rewrites, in every answer the broker sends, the broker's own
//! address (`127.0.0.1` and its port, as metadata and coordinator answers
//! encode them) into the proxy's; the client then stays behind the proxy for
//! every connection, and only the clients given the proxy's address do.
//!
//! A cut behaves as a network that drops packets: open connections stop
//! carrying anything in either direction and new ones are accepted and left
//! silent, so clients find out by their own timeouts. When the cut heals, the
//! silent connections are closed (as a router's reset would) and clients
//! reconnect.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The running proxy: forwards until dropped.
#[derive(Debug)]
pub struct Proxy {
    pub address: String,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of the broker at `upstream`.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let own = listener.local_addr().expect("proxy address");
        let upstream: SocketAddr = upstream.parse().expect("broker address");
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let rewrite = Rewrite::new(upstream.port(), own.port());
        let task = {
            let cut = Arc::clone(&cut);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve(client, upstream, rewrite.clone(), cut.subscribe()));
                }
            })
        };
        Proxy {
            address: own.to_string(),
            cut,
            task,
        }
    }

    /// Cuts the network: nothing passes until [`Proxy::heal`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The broker's address as Kafka answers encode it (the host's bytes, then the
/// port as a big-endian int32), and the proxy's in its place.
#[derive(Debug, Clone)]
struct Rewrite {
    from: Vec<u8>,
    to: Vec<u8>,
}

impl Rewrite {
    fn new(from_port: u16, to_port: u16) -> Rewrite {
        let encode = |port: u16| [b"127.0.0.1".as_slice(), &i32::from(port).to_be_bytes()].concat();
        Rewrite {
            from: encode(from_port),
            to: encode(to_port),
        }
    }

    fn apply(&self, frame: &mut [u8]) {
        let mut at = 0;
        while let Some(found) = frame[at..].windows(self.from.len()).position(|w| w == self.from) {
            let start = at + found;
            frame[start..start + self.to.len()].copy_from_slice(&self.to);
            at = start + self.to.len();
        }
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, rewrite: Rewrite, mut cut: watch::Receiver<bool>) {
    if *cut.borrow() {
        // Accepted during a cut: silent until it heals, then closed.
        let _ = cut.wait_for(|c| !*c).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let cut_now = tokio::select! {
        _ = tokio::io::copy(&mut client_read, &mut server_write) => false,
        _ = answers(&mut server_read, &mut client_write, &rewrite) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if cut_now {
        // Both sockets stay open and carry nothing until the cut heals.
        let _ = cut.wait_for(|c| !*c).await;
    }
}

/// Copies the broker's answers, frame by frame (a 4-byte length, then the
/// answer), with the broker's address rewritten into the proxy's.
async fn answers<R, W>(from: &mut R, to: &mut W, rewrite: &Rewrite) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    loop {
        let mut length = [0u8; 4];
        from.read_exact(&mut length).await?;
        let mut frame = vec![0u8; u32::from_be_bytes(length) as usize];
        from.read_exact(&mut frame).await?;
        rewrite.apply(&mut frame);
        to.write_all(&length).await?;
        to.write_all(&frame).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::Rewrite;

    #[test]
    fn rewrites_every_advertised_address_of_the_broker_only() {
        let rewrite = Rewrite::new(9092, 40001);
        let mut frame = [
            b"\x00\x09127.0.0.1\x00\x00\x23\x84".as_slice(),
            b"\x00\x09127.0.0.1\x00\x00\x23\x85",
            b"\x0a127.0.0.1\x00\x00\x23\x84",
        ]
        .concat();
        rewrite.apply(&mut frame);
        let port = 40001u16.to_be_bytes();
        let want = [
            b"\x00\x09127.0.0.1\x00\x00".as_slice(),
            &port,
            b"\x00\x09127.0.0.1\x00\x00\x23\x85",
            b"\x0a127.0.0.1\x00\x00",
            &port,
        ]
        .concat();
        assert_eq!(frame, want);
    }
}
