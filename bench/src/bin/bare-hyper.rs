//! The HTTP ceiling: a bare hyper 1 server that answers every request with the same fixed
//! bytes (sized like a cached OCSP response), after reading the request body as pkid does.
//! With `--sign KEY.p8` (a P-256 PKCS#8 key) it also signs each request body with ECDSA P-256
//! (aws-lc-rs, on the serving thread) and appends the signature: the ceiling of a responder
//! that signs every answer (OCSP with a nonce, RFC 3161 tokens).
//!
//! `bare-hyper --addr 127.0.0.1:0 --bytes 803 [--sign keys/ocsp.p8]` prints `listening on ADDR`
//! and serves until killed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() {
    let addr = arg("--addr", "127.0.0.1:0");
    let size: usize = arg("--bytes", "800").parse().unwrap_or(800);
    let body = Bytes::from(vec![0x30u8; size]);
    let key = match arg("--sign", "").as_str() {
        "" => None,
        path => {
            let der = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &der,
            )
            .unwrap_or_else(|e| panic!("{path}: not a P-256 PKCS#8 key: {e}"));
            Some(std::sync::Arc::new(key))
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let local = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                let key = key.clone();
                async move {
                    let received = req.into_body().collect().await.map(|c| c.to_bytes());
                    let body = match (key, received) {
                        (Some(key), Ok(message)) => {
                            let rng = aws_lc_rs::rand::SystemRandom::new();
                            let mut signed = body.to_vec();
                            if let Ok(sig) = key.sign(&rng, &message) {
                                signed.extend_from_slice(sig.as_ref());
                            }
                            Bytes::from(signed)
                        }
                        _ => body,
                    };
                    let mut r = Response::new(Full::new(body));
                    r.headers_mut().insert(
                        "content-type",
                        hyper::header::HeaderValue::from_static("application/ocsp-response"),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
