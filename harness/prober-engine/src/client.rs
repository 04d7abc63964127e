//! One worker's HTTP/1.1 client: a keep-alive connection to one address, driven in the task
//! that sends on it, so that a request and its answer never cross tasks or threads.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How a failure to connect, or a connection closed or reset before a whole answer, is told.
pub const CONNECTION_ERROR: &str = "connection refused or reset";

/// A request, built once and sent again and again.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: http::Method,
    /// Path and query, as the request line carries them.
    pub path: http::Uri,
    /// Every header, the Host header included.
    pub headers: HeaderMap,
}

/// A whole answer: its status, its headers and its body, or why the body could not be read.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: Result<Bytes, String>,
}

/// Requests to one `host:port`, one at a time, on a connection opened when needed and opened
/// again after a failure.
pub struct Client {
    address: String,
    timeout: Duration,
    connection: Option<Connection>,
}

impl Client {
    /// A client of `address` (`host:port`) that gives each request `timeout`, from the send
    /// (or the connect) to the last byte of the answer.
    pub fn new(address: &str, timeout: Duration) -> Self {
        Client {
            address: address.to_string(),
            timeout,
            connection: None,
        }
    }

    /// Sends `request` and reads its whole answer, or tells why there is none.
    pub async fn send(&mut self, request: &Request) -> Result<Answer, String> {
        let exchange = async {
            let open = match self.connection.take() {
                Some(open) if !open.sender.is_closed() => open,
                _ => Connection::open(&self.address).await?,
            };
            let (answer, open) = open.exchange(request).await;
            self.connection = open;
            answer
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                // Whatever the connection was doing, it cannot carry the next request.
                self.connection = None;
                Err("timeout".into())
            }
        }
    }
}

/// A keep-alive connection: the handle requests go through, and the connection itself, which
/// makes progress only while it is polled (by [`Connection::exchange`]).
struct Connection {
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: Pin<Box<http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>>>,
}

impl Connection {
    async fn open(address: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|_| CONNECTION_ERROR.to_string())?;
        // Requests are small and sent one at a time: send each at once.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("transport: {e}"))?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("transport: {e}"))?;
        Ok(Connection {
            sender,
            driver: Box::pin(driver),
        })
    }

    /// Sends `request` and reads its whole answer, driving the connection meanwhile. Gives the
    /// connection back if it can carry another request.
    async fn exchange(mut self, request: &Request) -> (Result<Answer, String>, Option<Self>) {
        let mut open = true;
        let result = {
            let Connection { sender, driver } = &mut self;
            let call = async {
                sender.ready().await?;
                let mut message = http::Request::new(Empty::new());
                *message.method_mut() = request.method.clone();
                *message.uri_mut() = request.path.clone();
                *message.headers_mut() = request.headers.clone();
                let (parts, body) = sender.send_request(message).await?.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes());
                Ok::<_, hyper::Error>((parts, body))
            };
            tokio::pin!(call);
            tokio::select! {
                biased;
                r = &mut call => r,
                _ = driver => {
                    // The connection ended (closed or failed): the call ends with what was
                    // read before, or with the connection's error.
                    open = false;
                    call.await
                }
            }
        };
        let answer = match result {
            Ok((parts, body)) => Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body: body.map_err(|e| format!("reading the body: {e}")),
            }),
            Err(e) => {
                open = false;
                Err(
                    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
                        CONNECTION_ERROR.into()
                    } else {
                        format!("transport: {e}")
                    },
                )
            }
        };
        (answer, (open && !self.sender.is_closed()).then_some(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// A server that answers every request with `answer` (a whole HTTP/1.1 response, or
    /// nothing at all when empty), counting the connections it accepted.
    async fn server(answer: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if answer.is_empty() {
                                continue;
                            }
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            if answer.contains("Connection: close") {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    fn get() -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "podinfo.test".parse().unwrap());
        Request {
            method: http::Method::GET,
            path: "/".parse().unwrap(),
            headers,
        }
    }

    #[tokio::test]
    async fn one_connection_carries_every_request() {
        let (address, accepted) =
            server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-subset: ga\r\n\r\nhi").await;
        let mut client = Client::new(&address, Duration::from_secs(5));
        for _ in 0..50 {
            let answer = client.send(&get()).await.unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.headers["x-subset"], "ga");
            assert_eq!(answer.body.unwrap(), "hi");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_opened_again() {
        let (address, accepted) = server(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
        )
        .await;
        let mut client = Client::new(&address, Duration::from_secs(5));
        for _ in 0..5 {
            let answer = client.send(&get()).await.unwrap();
            assert_eq!(answer.status, 503);
            assert_eq!(answer.body.unwrap(), "busy");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_chunked_answer_is_read_whole() {
        let (address, _) = server(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"v\r\na\r\n\":\"6.1.0\"}\r\n0\r\n\r\n",
        )
        .await;
        let mut client = Client::new(&address, Duration::from_secs(5));
        let body = client.send(&get()).await.unwrap().body.unwrap();
        assert_eq!(body, r#"{"v":"6.1.0"}"#);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout_and_the_next_request_reconnects() {
        let (address, accepted) = server("").await;
        let mut client = Client::new(&address, Duration::from_millis(100));
        for _ in 0..2 {
            assert_eq!(client.send(&get()).await.unwrap_err(), "timeout");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connection_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut client = Client::new(&address, Duration::from_secs(5));
        assert_eq!(client.send(&get()).await.unwrap_err(), CONNECTION_ERROR);
    }

    #[tokio::test]
    async fn an_answer_cut_short_fails_in_its_body() {
        let (address, _) =
            server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort")
                .await;
        let mut client = Client::new(&address, Duration::from_secs(5));
        // The head came whole; the body did not.
        let answer = client.send(&get()).await.unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.body.unwrap_err().starts_with("reading the body"));
    }
}
