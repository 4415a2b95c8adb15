//! Opens N TCP connections to an address and holds them idle, for the RSS figures of
//! bench/lb/run.sh. Sends one HTTP request on each first, so the proxy has surely
//! connected the backend side, then stays silent.
//!
//! idle_clients ADDR N      prints "READY <n>" once all are open; exits when stdin closes.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: idle_clients ADDR N");
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: idle_clients ADDR N");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut conns = Vec::with_capacity(n);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            set.spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n").await?;
                let mut buf = [0u8; 512];
                let got = s.read(&mut buf).await?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                std::io::Result::Ok(s)
            });
            if set.len() >= 256 || i + 1 == n {
                while let Some(r) = set.join_next().await {
                    match r {
                        Ok(Ok(s)) => conns.push(s),
                        Ok(Err(e)) => eprintln!("idle_clients: {e}"),
                        Err(e) => eprintln!("idle_clients: {e}"),
                    }
                }
            }
        }
        println!("READY {}", conns.len());
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await;
        drop(conns);
    });
}
