use super::*;
use crate::ir::Tensor;
use std::fs;
use std::path::Path;

fn store_of(dir: &Path, bytes: &[u8]) -> Result<WeightStore, WeightsError> {
    let path = dir.join("model.safetensors");
    fs::write(&path, bytes).unwrap();
    WeightStore::open(&path)
}

/// A file with a correct length prefix.
fn file_with(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn open_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match store_of(dir.path(), bytes) {
        Ok(s) => panic!("expected an error, opened {:?}", s.names()),
        Err(e) => {
            assert!(e.message().contains("model.safetensors"), "{e}");
            e.to_string()
        }
    }
}

fn one_tensor_err(entry: &str, data_len: usize) -> String {
    open_err(&file_with(
        &format!("{{\"w\":{entry}}}"),
        &vec![0; data_len],
    ))
}

fn specials() -> Vec<(String, Tensor)> {
    let f32_bits = [
        0x7fc0_0001, // quiet NaN with a payload
        0xff80_0001, // negative signalling NaN
        (-0.0f32).to_bits(),
        1, // smallest denormal
        f32::INFINITY.to_bits(),
        1.5f32.to_bits(),
    ];
    let f16_bits = [0x7e01, 0xfd55, 0x8000, 0x0001, 0xfc00, 0x3c00];
    let bf16_bits = [0x7fc1, 0xff81, 0x8000, 0x0001, 0xff80, 0x3f80];
    vec![
        (
            "a.f32".into(),
            Tensor::from_bits(ElemType::F32, vec![2, 3], f32_bits),
        ),
        (
            "b.f16".into(),
            Tensor::from_bits(ElemType::F16, vec![3, 2], f16_bits),
        ),
        (
            "c.bf16".into(),
            Tensor::from_bits(ElemType::BF16, vec![6], bf16_bits),
        ),
        (
            "scalar".into(),
            Tensor::from_f32(ElemType::F32, vec![], &[-2.0]),
        ),
        (
            "empty".into(),
            Tensor::from_f32(ElemType::F16, vec![0, 4], &[]),
        ),
        (
            "splat".into(),
            Tensor::splat_bits(ElemType::BF16, vec![3, 1000], 0x7fc3),
        ),
        (
            "odd \"name\" \\ with\nescapes \u{1} and ünïcødé 🦀".into(),
            Tensor::from_f32(ElemType::F16, vec![1], &[0.5]),
        ),
    ]
}

#[test]
fn round_trip_is_bit_exact_and_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let tensors = specials();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&path, &refs).unwrap();

    let store = WeightStore::open(&path).unwrap();
    assert_eq!(store.len(), tensors.len());
    assert!(!store.is_empty());
    for (name, t) in &tensors {
        let got = store.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert!(got.is_mapped(), "{name} is not mapped");
        assert_eq!(got.elem(), t.elem());
        assert_eq!(got.shape(), t.shape());
        assert!(
            got.bit_eq(t),
            "{name}: {:x?} != {:x?}",
            got.to_bits_vec(),
            t.to_bits_vec()
        );
        assert_eq!(store.info(name), Some((t.elem(), t.shape())));
    }
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(store.names(), names);
}

#[test]
fn written_files_follow_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let tensors = specials();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&path, &refs).unwrap();
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "data must start 8-byte aligned");
    // The reference implementation reads it, with the same contents.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), tensors.len());
    for (name, t) in &tensors {
        let view = st.tensor(name).unwrap();
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        assert_eq!(shape, t.shape());
        let expected = match t.elem() {
            ElemType::F32 => safetensors::Dtype::F32,
            ElemType::F16 => safetensors::Dtype::F16,
            ElemType::BF16 => safetensors::Dtype::BF16,
            ElemType::I64 => unreachable!("weights are floating-point"),
        };
        assert_eq!(view.dtype(), expected);
        let back = Tensor::from_bytes(t.elem(), shape, view.data().into()).unwrap();
        assert!(back.bit_eq(t), "{name}");
    }
    // An empty list makes a valid file too.
    write_safetensors(&path, &[]).unwrap();
    assert!(WeightStore::open(&path).unwrap().is_empty());
}

#[test]
fn files_from_other_writers_are_read() {
    // Header keys in any order, whitespace, `__metadata__`, shared and out-of-order ranges.
    let header = r#" { "__metadata__" : {"format":"pt"},
        "b" : {"shape":[2],"dtype":"F16","data_offsets":[4,8]},
        "a" : {"dtype":"F32","shape":[1],"data_offsets":[0,4], "extra": [null, true]},
        "a2": {"dtype":"BF16","shape":[2],"data_offsets":[0,4]} } "#;
    let data = [0, 0, 0x80, 0x3f, 0x00, 0x3c, 0x00, 0xc0];
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path(), &file_with(header, &data)).unwrap();
    assert_eq!(store.names(), ["a", "a2", "b"]);
    assert_eq!(store.get("a").unwrap().to_f32_vec(), [1.0]);
    assert_eq!(store.get("b").unwrap().to_f32_vec(), [1.0, -2.0]);
    assert_eq!(store.get("a2").unwrap().to_bits_vec(), [0, 0x3f80]);
}

#[test]
fn missing_tensors_are_reported_with_some_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let ts: Vec<(String, Tensor)> = (0..12)
        .map(|i| {
            (
                format!("t{i:02}"),
                Tensor::splat(ElemType::F32, vec![1], 0.0),
            )
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = ts.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&path, &refs).unwrap();
    let store = WeightStore::open(&path).unwrap();
    assert!(store.get("fc1.weight").is_none());
    let e = store.tensor("fc1.weight").unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "no tensor named \"fc1.weight\" in {} (it has 12 tensors: \
             \"t00\", \"t01\", \"t02\", \"t03\", \"t04\", ...)",
            path.display()
        )
    );
    assert!(store.tensor("t03").unwrap().is_mapped());

    write_safetensors(&path, &[]).unwrap();
    let e = WeightStore::open(&path).unwrap().tensor("x").unwrap_err();
    assert!(e.message().ends_with("(it has no tensors)"), "{e}");
}

#[test]
fn short_and_missing_files_are_errors() {
    assert!(open_err(&[]).contains("0 bytes, too short"));
    assert!(open_err(&[1, 2, 3, 4, 5]).contains("5 bytes, too short"));
    let dir = tempfile::tempdir().unwrap();
    let e = WeightStore::open(&dir.path().join("nope.safetensors")).unwrap_err();
    assert!(e.message().contains("nope.safetensors"), "{e}");
}

#[test]
fn bad_header_lengths_are_errors() {
    let mut f = file_with("{}", &[]);
    f[..8].copy_from_slice(&100u64.to_le_bytes());
    assert!(open_err(&f).contains("file has only 2 after it"));
    f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(open_err(&f).contains("more than the limit"));
    f[..8].copy_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
    assert!(open_err(&f).contains("more than the limit"));
    // Only the 8-byte prefix.
    assert!(open_err(&0u64.to_le_bytes()).contains("invalid header"));
}

#[test]
fn malformed_headers_are_errors() {
    let mut f = file_with("{\"a\":1}", &[]);
    f[9] = 0xff;
    assert!(open_err(&f).contains("not valid UTF-8"));
    for bad in [
        "{\"w\":",
        "[1,2]",
        "{} x",
        "{\"w\" {}}",
        "{\"w\":{},}",
        "{\"w\":tru}",
        "{\"w\":01}",
        "{\"w\":\"a\nb\"}",
        "{\"w\":\"\\ud800\"}",
        "{\"w\":\"\\q\"}",
        "{\"w\":\"abc",
        "",
    ] {
        let e = open_err(&file_with(bad, &[]));
        assert!(e.contains("invalid header"), "{bad:?}: {e}");
    }
    // Deep nesting is refused rather than overflowing the stack.
    let deep = format!(
        "{{\"__metadata__\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(open_err(&file_with(&deep, &[])).contains("recursion limit exceeded"));
    let e = open_err(&file_with("{\"__metadata__\":3}", &[]));
    assert!(e.contains("__metadata__"), "{e}");
}

#[test]
fn malformed_entries_are_errors() {
    let cases = [
        // (entry of tensor "w", data bytes, expected fragment)
        (
            r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
            4,
            "go past the end",
        ),
        (
            r#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#,
            8,
            "reversed data_offsets [8, 0]",
        ),
        (
            r#"{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#,
            8,
            "needs 8 bytes but its data_offsets [0, 4] cover 4",
        ),
        (
            r#"{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}"#,
            24,
            "shape [2, 3] needs 12 bytes",
        ),
        (
            r#"{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,0]}"#,
            0,
            "overflows",
        ),
        (
            r#"{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}"#,
            0,
            "overflows",
        ),
        (
            r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}"#,
            0,
            "non-negative integers",
        ),
        (
            r#"{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}"#,
            0,
            "non-negative integers",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999]}"#,
            4,
            "non-negative integers",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}"#,
            8,
            "must have 2 entries",
        ),
        (
            r#"{"dtype":"F32","shape":2,"data_offsets":[0,4]}"#,
            4,
            "not an array",
        ),
        (
            r#"{"shape":[1],"data_offsets":[0,4]}"#,
            4,
            "has no \"dtype\"",
        ),
        (
            r#"{"dtype":"F32","data_offsets":[0,4]}"#,
            4,
            "has no \"shape\"",
        ),
        (
            r#"{"dtype":"F32","shape":[1]}"#,
            4,
            "has no \"data_offsets\"",
        ),
        (
            r#"{"dtype":32,"shape":[1],"data_offsets":[0,4]}"#,
            4,
            "is not a string",
        ),
        (r#"[1]"#, 0, "is not an object"),
        (
            r#"{"dtype":"I32","shape":[1],"data_offsets":[0,4]}"#,
            4,
            "tensor \"w\" has dtype \"I32\", which is not supported",
        ),
        (
            r#"{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}"#,
            4,
            "tensor \"w\" has dtype \"Q4_K\"",
        ),
        (
            r#"{"dtype":"F64","shape":[1],"data_offsets":[0,8]}"#,
            8,
            "only F32, F16 and BF16",
        ),
    ];
    for (entry, len, fragment) in cases {
        let e = one_tensor_err(entry, len);
        assert!(e.contains(fragment), "{entry}: {e}");
        assert!(e.contains("\"w\""), "{entry}: {e}");
    }
    let dup = r#"{"w":{"dtype":"F32","shape":[],"data_offsets":[0,4]},
                  "w":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#;
    assert!(open_err(&file_with(dup, &[0; 4])).contains("more than once"));
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tensor::from_f32(ElemType::F32, vec![2], &[1.0, 2.0]);
    let missing = dir.path().join("no/such/dir/w.safetensors");
    assert!(write_safetensors(&missing, &[("t", &t)]).is_err());
    assert!(!dir.path().join("no").exists());

    // A refused write keeps the old file as it was and leaves no temporary file.
    let path = dir.path().join("w.safetensors");
    write_safetensors(&path, &[("t", &t)]).unwrap();
    let before = fs::read(&path).unwrap();
    assert!(write_safetensors(&path, &[("t", &t), ("t", &t)]).is_err());
    assert!(write_safetensors(&path, &[("__metadata__", &t)]).is_err());
    let huge = Tensor::splat(ElemType::F32, vec![1 << 40, 1 << 40], 0.0);
    assert!(write_safetensors(&path, &[("huge", &huge)]).is_err());
    assert_eq!(fs::read(&path).unwrap(), before);
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

#[test]
fn replacing_a_mapped_file_keeps_the_old_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let old = Tensor::from_f32(ElemType::F32, vec![2], &[1.0, 2.0]);
    write_safetensors(&path, &[("t", &old)]).unwrap();
    let store = WeightStore::open(&path).unwrap();
    let view = store.get("t").unwrap();
    let new = Tensor::from_f32(ElemType::F32, vec![2], &[3.0, 4.0]);
    write_safetensors(&path, &[("t", &new)]).unwrap();
    assert!(view.bit_eq(&old));
    assert!(store.get("t").unwrap().bit_eq(&old));
    assert!(WeightStore::open(&path)
        .unwrap()
        .get("t")
        .unwrap()
        .bit_eq(&new));
}
