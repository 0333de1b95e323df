//! Compiles the protos with protox (pure Rust), so no system `protoc` is
//! needed, then generates the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["parapet/edge/v1/edge.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
