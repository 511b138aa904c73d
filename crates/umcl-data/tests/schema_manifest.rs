//! The label schema (built-in and from TOML) and manifest reading and writing.

use std::path::Path;

use umcl_data::manifest::{write_manifest, Manifest, ManifestReader, ManifestWriter, Stats};
use umcl_data::sample::Sample;
use umcl_data::schema::{LabelState, Schema, CHEST_XRAY_KEYS};

#[test]
fn builtin_schema_has_the_17_keys_in_order() {
    let schema = Schema::chest_xray();
    assert_eq!(schema.name(), "chest-xray");
    assert_eq!(schema.keys().collect::<Vec<_>>(), CHEST_XRAY_KEYS);
    assert_eq!(schema.labels()[10].display, "Pleural Effusion");
    assert!(schema.labels()[10]
        .synonyms
        .contains(&"effusion".to_string()));
    for dataset in ["chexpert", "chestx-ray14", "iu-xray", "covid-cxr"] {
        assert!(schema.datasets().any(|d| d == dataset), "{dataset}");
    }
}

#[test]
fn dataset_names_map_to_keys() {
    let schema = Schema::chest_xray();
    let key = |name: &str| schema.index_of(name).unwrap();
    let cases = [
        (
            "chexpert",
            "Enlarged Cardiomediastinum",
            "enlarged_cardiomediastinum",
        ),
        ("chexpert", "Support Devices", "support_devices"),
        ("chexpert", "No Finding", "no_finding"),
        ("chestx-ray14", "Mass", "lung_lesion"),
        ("chestx-ray14", "Nodule", "lung_lesion"),
        ("chestx-ray14", "Infiltration", "lung_opacity"),
        ("chestx-ray14", "Pleural_Thickening", "pleural_other"),
        ("chestx-ray14", "Effusion", "pleural_effusion"),
        // Case and `_` do not matter.
        ("chestx-ray14", "pleural thickening", "pleural_other"),
        ("iu-xray", "Hernia, Hiatal", "hernia"),
        ("covid-cxr", "COVID-19", "pneumonia"),
        // A dataset without a table: keys and display names match.
        ("some-dataset", "Pleural Effusion", "pleural_effusion"),
        ("some-dataset", "lung_opacity", "lung_opacity"),
    ];
    for (dataset, name, expected) in cases {
        assert_eq!(
            schema.lookup(dataset, name),
            Some(&[key(expected)][..]),
            "{dataset} {name}"
        );
    }
    assert_eq!(schema.lookup("covid-cxr", "todo"), Some(&[][..]));
    assert_eq!(schema.lookup("chexpert", "Dragon"), None);
    // A dataset with a table is read through its table only: IU's index has "Fibrosis" as a
    // head term, which the shared data's mapping leaves out.
    assert_eq!(schema.lookup("iu-xray", "Fibrosis"), None);
    assert_eq!(schema.lookup("some-dataset", "Fibrosis"), Some(&[15][..]));
    // The 14 ChestX-ray14 names reach 14 keys (Mass and Nodule share one; No Finding counts).
    assert_eq!(schema.dataset_coverage("chestx-ray14").len(), 14);
}

#[test]
fn custom_schema_from_toml() {
    let text = r#"
name = "lungs"
[[labels]]
key = "nodule"
synonyms = ["mass"]
[[labels]]
key = "effusion"
display = "Pleural effusion"
[datasets.chestx-ray14]
Mass = "nodule"
Nodule = "nodule"
Effusion = ["effusion"]
Hernia = []
"#;
    let schema = Schema::from_toml_str(text, Path::new("lungs.toml")).unwrap();
    assert_eq!(schema.keys().collect::<Vec<_>>(), ["nodule", "effusion"]);
    // Without `display`, the key with spaces and a capital.
    assert_eq!(schema.labels()[0].display, "Nodule");
    assert_eq!(schema.lookup("chestx-ray14", "MASS"), Some(&[0][..]));
    assert_eq!(schema.lookup("chestx-ray14", "Hernia"), Some(&[][..]));
}

#[test]
fn bad_schemas_are_refused_with_the_reason() {
    let cases = [
        (
            "name = \"x\"\n[[labels]]\nkey = \"a\"\n[datasets.d]\nFoo = \"b\"\n",
            "x.toml: [datasets.d] maps `Foo` to `b`, which is not a label key",
        ),
        (
            "name = \"x\"\n[[labels]]\nkey = \"a\"\n[[labels]]\nkey = \"a\"\n",
            "x.toml: label key `a` appears twice",
        ),
        (
            "name = \"x\"\n[[labels]]\nkey = \"Big One\"\n",
            "x.toml: label key `Big One` must be non-empty lower_snake_case (a-z, 0-9, _)",
        ),
        (
            "name = \"x\"\nlabels = []\n",
            "x.toml: the schema has no [[labels]]",
        ),
        (
            "name = \"x\"\n[[labels]]\nkey = \"a\"\n[datasets.d]\nFoo = \"a\"\nfoo = \"a\"\n",
            "x.toml: [datasets.d] names `foo` twice (names match case-insensitively)",
        ),
    ];
    for (text, expected) in cases {
        let err = Schema::from_toml_str(text, Path::new("x.toml")).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
    let err = Schema::from_toml_str(
        "name = \"x\"\n[[labels]]\nkee = \"a\"\n",
        Path::new("x.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("x.toml: TOML parse error at line 3") && err.contains("kee"),
        "{err}"
    );
    assert!(Schema::resolve("no-such-schema.toml")
        .unwrap_err()
        .to_string()
        .starts_with("no-such-schema.toml: "));
}

fn sample(id: &str, patient: Option<&str>) -> Sample {
    let schema = Schema::chest_xray();
    let mut s = Sample::new(id, "test", &schema);
    s.patient_id = patient.map(str::to_string);
    s
}

#[test]
fn manifest_round_trip_and_line_format() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::chest_xray();
    let path = dir.path().join("m.jsonl");
    let mut a = sample("a", Some("p1"));
    a.image = Some(dir.path().join("images/a.png"));
    a.set_text("  Heart is enlarged.  ");
    a.labels[2] = LabelState::Positive;
    a.labels[5] = LabelState::Uncertain;
    a.labels[9] = LabelState::Negative;
    a.meta.insert("view".into(), "PA".into());
    let mut b = sample("b", None);
    b.image = Some("/abs/b.png".into());
    b.set_text("   ");
    write_manifest(&path, &schema, &[a.clone(), b.clone()]).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"format":"umcl-manifest","version":1,"schema":"chest-xray","keys":["no_finding","enlarged_cardiomediastinum","cardiomegaly","lung_opacity","lung_lesion","edema","consolidation","pneumonia","atelectasis","pneumothorax","pleural_effusion","pleural_other","fracture","support_devices","emphysema","fibrosis","hernia"]}"#
    );
    // Image relative to the manifest's directory; labels in schema order, CheXpert codes.
    assert_eq!(
        lines[1],
        r#"{"id":"a","patient_id":"p1","image":"images/a.png","text":"Heart is enlarged.","labels":{"cardiomegaly":1,"edema":-1,"pneumothorax":0},"source":"test","meta":{"view":"PA"}}"#
    );
    assert_eq!(
        lines[2],
        r#"{"id":"b","image":"/abs/b.png","labels":{},"source":"test"}"#
    );

    let manifest = Manifest::read(&path).unwrap();
    assert_eq!(manifest.header.schema, "chest-xray");
    manifest.header.check_schema(&schema, &path).unwrap();
    assert_eq!(manifest.samples.len(), 2);
    // Read back, the image path is resolved against the manifest's directory.
    assert_eq!(manifest.samples[0], a);
    assert_eq!(manifest.samples[1], b);

    let stats = Stats::count(&manifest.samples, schema.len());
    let t = &stats.sources["test"];
    assert_eq!(
        (
            t.samples,
            t.patients,
            t.with_image,
            t.with_text,
            t.with_labels
        ),
        (2, 1, 2, 1, 1)
    );
    // cardiomegaly: a positive, b unmentioned.
    assert_eq!(t.states[2], [1, 0, 0, 1]);
}

fn write_lines(dir: &Path, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join("bad.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

const HEADER: &str = r#"{"format":"umcl-manifest","version":1,"schema":"s","keys":["a","b"]}"#;

#[test]
fn reading_validates_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[HEADER, r#"{"id":"x","labels":{"c":1},"source":"t"}"#],
            "bad.jsonl:2: sample `x`: unknown label key `c` (schema `s`)",
        ),
        (
            &[HEADER, r#"{"id":"x","labels":{"a":2},"source":"t"}"#],
            "bad.jsonl:2: sample `x`: label `a` is 2, expected 1, 0 or -1",
        ),
        (
            &[HEADER, r#"{"id":"x","labels":{"a":"1"},"source":"t"}"#],
            "bad.jsonl:2: sample `x`: label `a` is \"1\", expected 1, 0 or -1",
        ),
        (
            &[
                HEADER,
                r#"{"id":"x","source":"t"}"#,
                "",
                r#"{"id":"x","source":"t"}"#,
            ],
            "bad.jsonl:4: sample id `x` repeats line 2",
        ),
        (
            &[HEADER, r#"{"id":"x","text":"","source":"t"}"#],
            "bad.jsonl:2: sample `x` has an empty `text` (leave the field out instead)",
        ),
        (
            &[r#"{"format":"umcl-manifest","version":2,"schema":"s","keys":["a"]}"#],
            "bad.jsonl:1: manifest version 2 is not supported (this umcl reads version 1)",
        ),
        (
            &[r#"{"format":"other","version":1,"schema":"s","keys":["a"]}"#],
            "bad.jsonl:1: format is `other`, expected `umcl-manifest`",
        ),
        (&[], "bad.jsonl: empty file, expected a manifest header"),
    ];
    for (lines, expected) in cases {
        let path = write_lines(dir.path(), lines);
        let err = Manifest::read(&path).unwrap_err().to_string();
        assert!(err.ends_with(expected), "{err}\nexpected …{expected}");
    }
    let path = write_lines(
        dir.path(),
        &[HEADER, r#"{"id":"x","source":"t","colour":"red"}"#],
    );
    let err = Manifest::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("bad.jsonl:2: not a sample: unknown field `colour`"),
        "{err}"
    );
    // Non-UTF-8 bytes.
    let path = dir.path().join("bytes.jsonl");
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n{\"id\":\"x\",\"text\":\"caf\xe9\",\"source\":\"t\"}\n");
    std::fs::write(&path, bytes).unwrap();
    let err = Manifest::read(&path).unwrap_err().to_string();
    assert!(err.ends_with("bytes.jsonl:2: not valid UTF-8"), "{err}");
    // A manifest of another schema.
    let path = write_lines(dir.path(), &[HEADER]);
    let reader = ManifestReader::open(&path).unwrap();
    let err = reader
        .header()
        .check_schema(&Schema::chest_xray(), &path)
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("bad.jsonl:1: the manifest's keys (schema `s`) differ from those of schema `chest-xray`"), "{err}");
}

#[test]
fn writes_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::chest_xray();
    let path = dir.path().join("m.jsonl");
    write_manifest(&path, &schema, &[sample("old", None)]).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();

    // A writer dropped before `finish` leaves the old file as it was and no temporary file.
    let mut writer = ManifestWriter::create(&path, &schema).unwrap();
    writer.write(&sample("new", None)).unwrap();
    drop(writer);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    // A failed write (a repeated id) neither.
    let err = write_manifest(&path, &schema, &[sample("x", None), sample("x", None)])
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("m.jsonl:3: sample id `x` repeats line 2"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["m.jsonl"]);
}

#[test]
fn a_byte_order_mark_before_the_header_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::chest_xray();
    let path = dir.path().join("m.jsonl");
    write_manifest(&path, &schema, &[sample("a", None)]).unwrap();
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(&path).unwrap());
    std::fs::write(&path, bytes).unwrap();
    let mut reader = ManifestReader::open(&path).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().id, "a");
}
