//! Compiles `capnp/*.capnp` with the `capnp` tool (Debian's `capnproto`, installed by
//! `scripts/setup`). The generated code lands in OUT_DIR and is included by `src/lib.rs`.

fn main() {
    for file in ["common", "master", "worker"] {
        println!("cargo:rerun-if-changed=capnp/{file}.capnp");
    }
    let result = capnpc::CompilerCommand::new()
        .src_prefix("capnp")
        .file("capnp/common.capnp")
        .file("capnp/master.capnp")
        .file("capnp/worker.capnp")
        .run();
    if let Err(e) = result {
        panic!(
            "compiling the Cap'n Proto schema failed: {e}\n\
             The `capnp` compiler comes from Debian's `capnproto` package; run `scripts/setup` \
             (or `apt-get install capnproto`)."
        );
    }
}
