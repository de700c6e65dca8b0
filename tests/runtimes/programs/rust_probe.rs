//! A plain Rust program with the standard library only: `TcpStream::connect((host, port))`
//! (getaddrinfo, then connect, both from libc) and HTTP/1.0 by hand. Prints the response body on
//! stdout and the peer address on stderr; a failure goes to stderr with exit code 1.
//!
//!     rust-probe http://host:port/path
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::exit;
use std::time::Duration;

fn main() {
    let url = std::env::args().nth(1).unwrap_or_default();
    if let Err(error) = fetch(&url) {
        eprintln!("rust probe failed: {error}");
        exit(1);
    }
}

fn fetch(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = authority.rsplit_once(':').ok_or("the URL needs a port")?;
    let mut stream = TcpStream::connect((host, port.parse::<u16>()?))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    eprintln!("rust: connected to {}", stream.peer_addr()?);
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.lines().next().unwrap_or("").contains(" 200 ") {
        return Err(format!("answer: {}", head.lines().next().unwrap_or("")).into());
    }
    print!("{body}");
    Ok(())
}
