//! Generates the gRPC server API's messages and service (server and client) from
//! `proto/api.proto` with protoc (installed by `scripts/install-test-deps.sh`; `PROTOC` may
//! name another).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
