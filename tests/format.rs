//! The model file format: round trip, every truncation, seeded byte flips, and one test per
//! typed error. No input may panic.

mod common;
use common::*;
use edge::builder::AlignedBytes;
use edge::format::{self, entry, field, seal};
use edge::{Error, Input, Model};

fn damaged(file: &AlignedBytes, f: impl FnOnce(&mut [u8])) -> AlignedBytes {
    let mut d = file.clone();
    f(d.as_mut_slice());
    d
}

fn resealed(file: &AlignedBytes, f: impl FnOnce(&mut [u8])) -> Result<(), Error> {
    let d = damaged(file, |b| {
        f(b);
        seal(b);
    });
    Model::parse(d.as_slice()).map(|_| ())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn entry_at(i: usize) -> usize {
    format::HEADER_LEN + i * format::ENTRY_LEN
}

#[test]
fn round_trip_preserves_arch_and_packed_tensors() {
    let (arch, file) = tiny_model(1);
    let m = Model::parse(file.as_slice()).unwrap();
    assert_eq!(*m.arch(), arch);
    assert_eq!(m.file_len(), file.as_slice().len());
    for (i, id) in format::tensor_ids(&arch, edge::Precision::F32).enumerate() {
        assert_eq!(m.tensor_id(i), Some(id));
    }
    // Same weights → byte-identical file (deterministic writer).
    let (_, again) = tiny_model(1);
    assert_eq!(file.as_slice(), again.as_slice());
    // And the atto file re-converted is identical too, and runs.
    let a = atto();
    assert_eq!(a.as_slice(), atto().as_slice());
}

#[test]
fn every_truncation_is_rejected_without_panic() {
    let (_, file) = tiny_model(2);
    let bytes = file.as_slice();
    for len in 0..bytes.len() {
        let t = AlignedBytes::from_slice(&bytes[..len]);
        let e = Model::parse(t.as_slice()).expect_err("a truncated file must be rejected");
        assert!(
            matches!(e, Error::Truncated { .. } | Error::LengthMismatch { .. }),
            "len {len}: {e}"
        );
    }
    // Truncated and resealed with a fixed-up length: still refused, by the deeper checks.
    for len in (format::HEADER_LEN..bytes.len()).step_by(97) {
        let mut t = AlignedBytes::from_slice(&bytes[..len]);
        put_u64(t.as_mut_slice(), field::FILE_LEN, len as u64);
        seal(t.as_mut_slice());
        assert!(Model::parse(t.as_slice()).is_err(), "len {len}");
    }
}

#[test]
fn seeded_byte_flips_are_rejected_or_give_a_runnable_model() {
    let (_, file) = tiny_model(3);
    let n = file.as_slice().len();
    let mut s = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut accepted = 0;
    for i in 0..3000 {
        let pos = if i % 2 == 0 {
            rnd() as usize % (format::HEADER_LEN + 64 * format::ENTRY_LEN).min(n)
        } else {
            rnd() as usize % n
        };
        let bit = 1u8 << (rnd() % 8);
        // Without resealing every flip is refused: magic, version, CRC and length fields by
        // their own checks, everything after them by the checksum.
        let d = damaged(&file, |b| b[pos] ^= bit);
        let e = Model::parse(d.as_slice())
            .map(|_| ())
            .expect_err("an unsealed flip must be refused");
        if pos >= field::HEADER_LEN {
            assert!(
                matches!(e, Error::ChecksumMismatch { .. }),
                "flip at {pos}: {e}"
            );
        }
        // Resealed, the structural checks must hold: a typed error, or a model that runs.
        let d = damaged(&file, |b| {
            b[pos] ^= bit;
            seal(b);
        });
        if let Ok(m) = Model::parse(d.as_slice()) {
            accepted += 1;
            let mut arena = vec![0u8; m.arena_len()];
            let mut logits = vec![0f32; m.arch().num_classes];
            m.run(
                Input::HwcU8(&vec![128u8; m.arch().input_h * m.arch().input_w * 3]),
                &mut arena,
                &mut logits,
            )
            .ok();
        }
    }
    // Most payload flips change a weight and stay valid; header/table flips must mostly fail.
    assert!(accepted > 100 && accepted < 3000, "{accepted}");
}

#[test]
fn each_defect_has_its_own_error() {
    let (_, file) = tiny_model(4);
    let b = file.as_slice();
    let parse = |d: &AlignedBytes| Model::parse(d.as_slice()).map(|_| ());

    assert!(matches!(
        parse(&damaged(&file, |b| b[0] = b'X')),
        Err(Error::BadMagic)
    ));
    assert_eq!(
        parse(&damaged(&file, |b| put_u32(b, field::VERSION, 9))),
        Err(Error::UnsupportedVersion {
            found: 9,
            supported: 2
        })
    );
    // Version 1 files (f32 only, same layout) are still read; version 1 has no int8 flag.
    assert_eq!(resealed(&file, |b| put_u32(b, field::VERSION, 1)), Ok(()));
    assert!(matches!(
        resealed(&file, |b| {
            put_u32(b, field::VERSION, 1);
            put_u32(b, field::FLAGS, format::FLAG_INT8)
        }),
        Err(Error::BadHeader { field: "flags", .. })
    ));
    // An f32 file flagged int8 lacks the int8 tensors.
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::FLAGS, format::FLAG_INT8)),
        Err(Error::TensorCount { .. })
    ));
    let mut longer = b.to_vec();
    longer.push(0);
    assert!(matches!(
        parse(&AlignedBytes::from_slice(&longer)),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        parse(&damaged(&file, |b| b[b.len() - 1] ^= 1)),
        Err(Error::ChecksumMismatch { .. })
    ));

    // Misaligned buffer: same bytes one byte off a 16-byte boundary.
    let mut shifted = AlignedBytes::from_slice(&[&[0u8][..], b].concat());
    let m = Model::parse(&shifted.as_mut_slice()[1..]);
    assert_eq!(
        m.map(|_| ()),
        Err(Error::BufferMisaligned { address_mod_16: 1 })
    );

    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::FLAGS, 2)),
        Err(Error::BadHeader { field: "flags", .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::HEADER_LEN, 64)),
        Err(Error::BadHeader {
            field: "header_len",
            ..
        })
    ));
    assert!(matches!(
        resealed(&file, |b| b[field::RESERVED] = 1),
        Err(Error::ReservedNotZero { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::NUM_STAGES, 9)),
        Err(Error::BadHeader {
            field: "num_stages",
            ..
        })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::IN_CHANS, 1)),
        Err(Error::BadArch { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::NUM_CLASSES, 0)),
        Err(Error::BadArch { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::LN_EPS, f32::NAN.to_bits())),
        Err(Error::BadArch { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::INPUT_H, 16)),
        Err(Error::InputTooSmall { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::DIMS, 0)),
        Err(Error::BadArch { .. })
    ));
    // A different depth changes the tensor count the architecture needs.
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::DEPTHS, 2)),
        Err(Error::TensorCount { .. })
    ));
    // A different width keeps the count but not the shapes.
    assert!(matches!(
        resealed(&file, |b| put_u32(b, field::DIMS, 16)),
        Err(Error::TensorShape { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u64(b, field::TABLE_OFFSET, 0)),
        Err(Error::BadHeader {
            field: "table_offset",
            ..
        })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u64(b, field::PAYLOAD_OFFSET, 7)),
        Err(Error::BadHeader {
            field: "payload_offset",
            ..
        })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u64(b, field::PAYLOAD_LEN, 7)),
        Err(Error::BadHeader {
            field: "payload_len",
            ..
        })
    ));

    let e5 = entry_at(5);
    assert!(matches!(
        resealed(&file, |b| b[e5 + entry::ROLE] = 99),
        Err(Error::TensorRole { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| b[e5 + entry::STAGE] = 1),
        Err(Error::TensorRole { index: 5, .. })
    ));
    assert_eq!(
        resealed(&file, |b| b[e5 + entry::DTYPE] = 3),
        Err(Error::UnsupportedDtype { index: 5, tag: 3 })
    );
    assert!(matches!(
        resealed(&file, |b| b[e5 + entry::LAYOUT] = 3),
        Err(Error::BadLayout { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| b[e5 + entry::RESERVED] = 1),
        Err(Error::ReservedNotZero { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| b[e5 + entry::QUANT] = 0),
        Err(Error::ReservedNotZero { .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u32(b, e5 + entry::SHAPE, 3)),
        Err(Error::TensorShape { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| b[e5 + entry::NDIM] = 2),
        Err(Error::TensorShape { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u64(b, e5 + entry::NBYTES, 4)),
        Err(Error::TensorOutOfBounds { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| put_u64(b, e5 + entry::OFFSET, u64::MAX - 63)),
        Err(Error::TensorOutOfBounds { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| {
            let off = u64::from_le_bytes(
                b[e5 + entry::OFFSET..e5 + entry::OFFSET + 8]
                    .try_into()
                    .unwrap(),
            );
            put_u64(b, e5 + entry::OFFSET, off + 4)
        }),
        Err(Error::TensorMisaligned { index: 5, .. })
    ));
    assert!(matches!(
        resealed(&file, |b| {
            let prev =
                u64::from_le_bytes(b[entry_at(4) + entry::OFFSET..][..8].try_into().unwrap());
            put_u64(b, e5 + entry::OFFSET, prev)
        }),
        Err(Error::TensorOverlap { index: 5 })
    ));
    assert!(matches!(
        resealed(&file, |b| {
            let off = u64::from_le_bytes(b[e5 + entry::OFFSET..][..8].try_into().unwrap()) as usize;
            b[off..off + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }),
        // Named by its timm key: stem's four tensors come first, then block 0's depthwise pair.
        Err(Error::NonFiniteWeight {
            index: 5,
            element: 0,
            tensor,
        }) if tensor.to_string() == "stages.0.blocks.0.conv_dw.bias"
    ));
    // Every message says something specific.
    let msg = resealed(&file, |b| b[e5 + entry::DTYPE] = 3)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tensor 5") && msg.contains("dtype"), "{msg}");
}

#[test]
fn run_rejects_bad_buffers_with_sizes_in_the_error() {
    let (arch, file) = tiny_model(5);
    let m = Model::parse(file.as_slice()).unwrap();
    let img = vec![0u8; arch.input_h * arch.input_w * 3];
    let mut logits = vec![0f32; arch.num_classes];
    let mut small = vec![0u8; m.arena_len() - 16];
    assert_eq!(
        m.run(Input::HwcU8(&img), &mut small, &mut logits),
        Err(Error::ArenaTooSmall {
            needed: m.arena_len(),
            got: m.arena_len() - 16
        })
    );
    let mut arena = vec![0u8; m.arena_len()];
    assert!(matches!(
        m.run(Input::HwcU8(&img[1..]), &mut arena, &mut logits),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        m.run(Input::NchwF32(&[0.0; 5]), &mut arena, &mut logits),
        Err(Error::InputLength { .. })
    ));
    let mut nan = vec![0f32; arch.input_h * arch.input_w * 3];
    nan[77] = f32::NAN;
    assert_eq!(
        m.run(Input::NchwF32(&nan), &mut arena, &mut logits),
        Err(Error::NonFiniteInput { index: 77 })
    );
    nan[77] = f32::NEG_INFINITY;
    assert_eq!(
        m.run(Input::NchwF32(&nan), &mut arena, &mut logits),
        Err(Error::NonFiniteInput { index: 77 })
    );
    assert!(matches!(
        m.run(Input::HwcU8(&img), &mut arena, &mut logits[1..]),
        Err(Error::OutputLength {
            expected: 5,
            got: 4
        })
    ));
    // The exact advertised length works at every alignment of the caller's buffer.
    let mut big = vec![0u8; m.arena_len() + 16];
    for off in 0..16 {
        let len = m.arena_len();
        m.run(Input::HwcU8(&img), &mut big[off..off + len], &mut logits)
            .unwrap();
    }
    assert!(logits.iter().all(|v| v.is_finite()));
}
