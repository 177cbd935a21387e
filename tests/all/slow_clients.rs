//! Slow, silent and greedy clients against a real server on 127.0.0.1:
//! slow headers and idle connections are closed, stalled and trickled bodies
//! get 408, and none of them keeps other clients from uploading.

use std::time::{Duration, Instant};

use airlock::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;
use crate::harness::*;

const HEADER_TIMEOUT: Duration = Duration::from_millis(1500);
const KEEP_ALIVE: Duration = Duration::from_millis(700);
const BODY_READ: Duration = Duration::from_millis(1000);
const WRITE: Duration = Duration::from_millis(1000);
const DEADLINE_SECONDS: u64 = 4;
/// What a timer may take beyond its setting on a busy 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

/// The standard config with short timeouts.
fn short_timeouts(dir: &std::path::Path) -> Config {
    let mut config = config(Backends::Local, dir);
    config.server.header_read_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
    config.server.keep_alive_timeout_ms = KEEP_ALIVE.as_millis() as u64;
    config.server.body_read_timeout_ms = BODY_READ.as_millis() as u64;
    config.server.write_timeout_ms = WRITE.as_millis() as u64;
    config.server.upload_deadline_seconds = DEADLINE_SECONDS;
    config
}

async fn start(edit: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = short_timeouts(dir.path());
    edit(&mut config);
    TestServer::with_config(config, dir).await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or resets it); what it
/// sent, or `None` if it was still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(got)
}

/// Whether the server has sent nothing and kept the connection open.
fn still_waiting(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The head of an upload request of `len` bytes by the client with `key`.
fn upload_head(key: &str, len: usize) -> String {
    format!(
        "POST /v1/uploads?filename=slow.bin HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {key}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

/// The metric of upload body bytes the server has read.
const BYTES_RECEIVED: &str = "airlock_upload_bytes_total";

/// An upload that sends its head and `sent` of `len` body bytes, then
/// nothing.
async fn stalled_upload(server: &TestServer, key: &str, len: usize, sent: usize) -> TcpStream {
    let mut stream = connect(server).await;
    stream
        .write_all(upload_head(key, len).as_bytes())
        .await
        .unwrap();
    stream.write_all(&vec![b'x'; sent]).await.unwrap();
    stream
}

/// The status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_at_the_header_read_timeout() {
    let server = start(|_| {}).await;
    let mut stream = connect(&server).await;
    let started = Instant::now();
    stream
        .write_all(b"POST /v1/uploads HTTP/1.1\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // One header byte every 100 ms: never a whole head, never silent for
    // long enough to look idle.
    let trickle = tokio::spawn(async move {
        for byte in b"X-Slow: ".iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await; // the client's pace, not a wait
        }
    });
    let closed = tokio::time::timeout(HEADER_TIMEOUT + SLACK, async {
        let mut buf = [0u8; 256];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a client trickling its headers was still connected after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
    assert!(
        server
            .metric("airlock_http_connection_timeouts_total{kind=\"header_read\"}")
            .await
            >= 1.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_while_uploads_go_through() {
    let server = start(|_| {}).await;
    // 100 connections that never send a byte, and one that goes idle after
    // a request.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(connect(&server).await);
    }
    let mut kept_alive = connect(&server).await;
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let opened = Instant::now();

    // Others upload meanwhile.
    for _ in 0..3 {
        server.upload_picture(ALICE, "", 201).await;
    }

    let answer = read_until_closed(&mut kept_alive, KEEP_ALIVE + SLACK)
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
    for stream in &mut idle {
        assert!(
            read_until_closed(stream, KEEP_ALIVE + SLACK)
                .await
                .is_some(),
            "a silent connection was still open after {:?}",
            opened.elapsed()
        );
    }
    let closed = server
        .metric("airlock_http_connection_timeouts_total{kind=\"keep_alive\"}")
        .await;
    assert!(closed >= 101.0, "{closed} keep-alive closes counted");
    // In the end only the connection that reads /metrics is open.
    let only_one = eventually(SLACK, || async {
        (server.metric("airlock_http_connections_open").await == 1.0).then_some(())
    })
    .await;
    assert!(only_one.is_some(), "{}", server.metrics().await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_as_json() {
    let server = start(|_| {}).await;
    // Declares 100 bytes, sends 10.
    let mut stream = stalled_upload(&server, ALICE, 100, 10).await;
    let started = Instant::now();
    let raw = read_until_closed(&mut stream, BODY_READ + SLACK)
        .await
        .expect("a stalled body held its connection");
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        started.elapsed() >= BODY_READ - Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&raw).contains("connection: close"),
        "{raw:?}"
    );
    // Nothing of it was kept.
    let tmp = std::fs::read_dir(server.dir.path().join(".tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "temp files left behind");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_at_the_upload_deadline() {
    let server = start(|_| {}).await;
    let stream = stalled_upload(&server, ALICE, 1 << 20, 1).await;
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    // A byte every 200 ms keeps within the read timeout but would take
    // days for the declared megabyte.
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await; // the client's pace, not a wait
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(DEADLINE_SECONDS) + SLACK,
        reader.read_to_end(&mut raw),
    )
    .await;
    trickle.abort();
    assert!(read.is_ok(), "a trickled body outlived the upload deadline");
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not arrive within"),
        "{body}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(DEADLINE_SECONDS) - Duration::from_millis(200)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_processing_slot() {
    let server = start(|config| {
        config.server.max_concurrent_uploads = 2;
        // Long enough that the slow uploads are still open at the end.
        config.server.body_read_timeout_ms = 60_000;
        config.server.upload_deadline_seconds = 120;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(stalled_upload(&server, ALICE, 1000, 10).await);
    }
    // Every slow upload has reached the pipeline (its first bytes were
    // read; a body this small stays in memory, so no temp file shows it).
    let receiving = eventually(Duration::from_secs(10), || async {
        (server.metric(BYTES_RECEIVED).await >= 4.0 * 10.0).then_some(())
    })
    .await;
    assert!(receiving.is_some(), "the slow uploads never started");

    let started = Instant::now();
    for key in [ALICE, BOB] {
        server.upload_picture(key, "", 201).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "uploads waited {:?} behind slow clients",
        started.elapsed()
    );
    for stream in &slow {
        assert!(still_waiting(stream), "a slow upload was answered early");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_upload() {
    let server = start(|config| {
        config.server.max_uploads_per_client = 2;
        config.server.body_read_timeout_ms = 60_000;
        config.server.upload_deadline_seconds = 120;
    })
    .await;
    let _held = [
        stalled_upload(&server, ALICE, 1000, 10).await,
        stalled_upload(&server, ALICE, 1000, 10).await,
    ];
    let held = eventually(Duration::from_secs(10), || async {
        (server.metric(BYTES_RECEIVED).await >= 2.0 * 10.0).then_some(())
    })
    .await;
    assert!(held.is_some(), "the held uploads never started");

    let response = server
        .upload(ALICE, fixture_bytes("picture.png"), "image/png", "")
        .await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body = json(response, 429).await;
    assert_eq!(body["error"]["code"], "too_many_uploads", "{body}");
    // Another client is not affected.
    server.upload_picture(BOB, "", 201).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let server = start(|config| {
        config.server.max_connections = 4;
        config.server.header_read_timeout_ms = 60_000;
        config.server.keep_alive_timeout_ms = 60_000;
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(connect(&server).await);
    }
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let over_cap = quick.get(server.url("/healthz")).send().await;
    assert!(
        over_cap.is_err(),
        "a 5th connection was served: {over_cap:?}"
    );

    // One leaves: the next is served.
    drop(open.pop());
    let served = eventually(Duration::from_secs(10), || async {
        let response = quick.get(server.url("/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "no connection was served after one closed"
    );
    drop(open);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_download_is_dropped() {
    let server = start(|_| {}).await;
    // More than the socket buffers on both ends can hold.
    const SIZE: usize = 24 << 20;
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let record = server
        .upload_json(ALICE, bytes, "application/octet-stream", "", 201)
        .await;
    let id = record["id"].as_str().unwrap();

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(server.base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /v1/uploads/{id}/content HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer {ALICE}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // It reads nothing; the server gives up on it.
    let dropped = eventually(WRITE + SLACK, || async {
        let n = server
            .metric("airlock_http_connection_timeouts_total{kind=\"write\"}")
            .await;
        (n >= 1.0).then_some(())
    })
    .await;
    assert!(dropped.is_some(), "{}", server.metrics().await);
    let got = read_until_closed(&mut stream, SLACK)
        .await
        .expect("the connection is closed");
    assert!(got.len() < SIZE, "the whole download arrived");
    // Others are served meanwhile.
    server.upload_picture(BOB, "", 201).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_begins_as_its_connection_idles_out_still_completes() {
    let server = start(|_| {}).await;
    let mut stream = connect(&server).await;
    // The head starts at once but is completed only after the keep-alive
    // timer has closed the connection gracefully (hyper keeps it for the
    // request whose head is arriving), well within the header timeout.
    let head = upload_head(ALICE, 10);
    let (first, rest) = head.split_at(10);
    stream.write_all(first.as_bytes()).await.unwrap();
    let idled_out = eventually(HEADER_TIMEOUT, || async {
        let closed = server
            .metric("airlock_http_connection_timeouts_total{kind=\"keep_alive\"}")
            .await;
        (closed >= 1.0).then_some(())
    })
    .await;
    assert!(idled_out.is_some(), "{}", server.metrics().await);
    stream.write_all(rest.as_bytes()).await.unwrap();
    // Then a body that takes longer than the write and header timeouts
    // together, a byte every 300 ms (within the body read timeout).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await; // the client's pace, not a wait
        stream.write_all(b"x").await.unwrap();
    }
    let raw = read_until_closed(&mut stream, SLACK)
        .await
        .expect("the connection is closed after its last request");
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], 10, "{body}");
    server.stop().await;
}
