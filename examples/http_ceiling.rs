//! The HTTP ceiling of this machine: a bare actix-web server that reads each request's
//! body and answers 200 with a short JSON body, as the bridge does, but checks nothing
//! and writes nothing. Driving it with the same load tool and bodies as the bridge
//! shows how many requests per second the HTTP layer alone allows here.
//!
//! ```sh
//! cargo run --release --example http_ceiling -- --listen 127.0.0.1:18400
//! ```

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18400")]
    listen: SocketAddr,
    /// Worker threads; 0 means one per CPU core, as the bridge's default.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Largest body read, as the bridge's `ingest.max_body_bytes` default.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
}

async fn receive(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(&body);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"accepted"}"#)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let limit = args.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::PayloadConfig::new(limit))
            .default_service(web::post().to(receive))
    })
    .disable_signals();
    if args.workers > 0 {
        server = server.workers(args.workers);
    }
    eprintln!("http_ceiling listening on {}", args.listen);
    server.bind(args.listen)?.run().await
}
