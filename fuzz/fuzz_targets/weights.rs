//! The weights readers behind `quant convert` (safetensors; PyTorch ZIP and legacy pickle
//! through pytorch-reader; ONNX through tract-onnx's protobuf and quant's structural reader), then architecture inference and conversion. The bytes go through a
//! file because that is the readers' interface (pytorch-reader needs a path for tensor data).
//! Run with `-rss_limit_mb=2048`: a header declaring absurd sizes must be a typed error, not
//! an allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A legacy pickle (protocol byte 0x80) needs the .pth name, ONNX (a ModelProto opens with
    // field 1, ir_version: byte 0x08) the .onnx name; ZIP archives are recognised by their magic
    // whatever the name.
    let ext = match data.first() {
        Some(0x80) => "pth",
        Some(0x08) => "onnx",
        _ => "safetensors",
    };
    let path = std::env::temp_dir().join(format!("edge-fuzz-{}.{ext}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(sd) = quant::load_state_dict(&path) {
        if let Ok(arch) = quant::infer_arch(&sd, 32, 32) {
            let _ = quant::convert::convert(&sd, &arch);
        }
    }
});
