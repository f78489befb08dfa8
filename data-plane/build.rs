//! Generates, with protoc (installed by `scripts/install-test-deps.sh`; `PROTOC` may name
//! another), the gRPC server API's messages and service from `proto/api.proto` and the gRPC
//! proxy protocol's from `proto/proxy.proto` (server and client of each: tests play the other
//! side). The proxy client has no transport helpers: its service has a `Connect` method, which
//! would clash with tonic's `connect` constructor (Rotor builds its channels itself).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/proxy.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .bytes(".centrifugal.centrifugo.proxy")
        .compile_protos(&["proto/proxy.proto"], &["proto"])?;
    Ok(())
}
