//! Compiles `proto/` into Rust with protox (no system `protoc`) and writes the encoded
//! descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/ticketd/v1/ticket.proto",
        "proto/ticketd/v1/activity.proto",
        "proto/ticketd/v1/ticket_service.proto",
        "proto/ticketd/v1/admin_service.proto",
        "proto/ticketd/v1/escalation_service.proto",
        "proto/ticketd/v1/contact_service.proto",
        "proto/ticketd/v1/automation_service.proto",
        "proto/ticketd/v1/view_service.proto",
        "proto/ticketd/v1/report_service.proto",
        "proto/ticketd/v1/webhook_service.proto",
    ];
    // `protox::compile` would drop custom options; the compiler's own encoding keeps the
    // `google.api.http` rules the HTTP edge routes by.
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true);
    compiler.open_files(files)?;
    let descriptors = compiler.file_descriptor_set();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let encoded = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join("ticketd_descriptor.bin"), &encoded)?;
    // Messages name themselves (`prost::Name`), so the codec can look up their shape.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc::codec::BoundedCodec")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
