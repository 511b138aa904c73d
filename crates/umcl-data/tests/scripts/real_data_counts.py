#!/usr/bin/env python3
"""Independent counts on ../shared/data that tests/real_data.rs checks the adapters against.

Plain Python csv, no umcl code: IU X-ray positives per label from the MeSH head terms with the
mapping of shared/data/README.md, and COVID-19 collection counts with the mapping documented in
sources/covid.rs (rows repeating an earlier image file are left out, as --skip-bad does).
Run from the repository root: python3 crates/umcl-data/tests/scripts/real_data_counts.py
"""
import csv
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../../shared/data")

IU = {
    "no_finding": ["normal"],
    "cardiomegaly": ["Cardiomegaly"],
    "atelectasis": ["Pulmonary Atelectasis"],
    "pleural_effusion": ["Pleural Effusion"],
    "edema": ["Pulmonary Edema"],
    "pneumothorax": ["Pneumothorax", "Hydropneumothorax", "Hemopneumothorax"],
    "consolidation": ["Consolidation"],
    "pneumonia": ["Pneumonia"],
    "lung_opacity": ["Opacity", "Airspace Disease", "Infiltrate"],
    "lung_lesion": ["Nodule", "Mass"],
    "fracture": ["Fractures, Bone"],
    "support_devices": ["Catheters, Indwelling", "Implanted Medical Device", "Surgical Instruments",
                        "Tube, Inserted", "Medical Device", "Stents"],
    "emphysema": ["Emphysema", "Pulmonary Emphysema", "Bullous Emphysema"],
    "hernia": ["Hernia, Hiatal", "Hernia, Diaphragmatic"],
}

rows = list(csv.DictReader(open(os.path.join(DATA, "iu-xray-reports/reports-dev.csv"), newline="")))
print("iu reports", len(rows))
print("iu with text", sum(1 for r in rows if r["findings"].strip() or r["impression"].strip()))
for key, terms in IU.items():
    wanted = {t.lower() for t in terms}
    n = 0
    for r in rows:
        heads = {t.split("/")[0].strip().lower()
                 for c in ("mesh_major", "mesh_minor") for t in r[c].split(";") if t}
        n += bool(heads & wanted)
    print("iu", key, n)

rows = list(csv.DictReader(open(os.path.join(DATA, "covid-cxr-512/metadata.csv"), newline="")))
seen, kept = set(), []
for r in rows:
    if r["image"] in seen:
        continue
    seen.add(r["image"])
    kept.append(r)
print("covid rows", len(rows), "kept", len(kept))
print("covid patients", len({r["patientid"] for r in kept}))
print("covid with text", sum(1 for r in kept if r["clinical_notes"].strip()))
parts = [[p.strip() for p in r["finding"].replace("/", ",").split(",") if p.strip()] for r in kept]
print("covid no_finding", sum("No Finding" in p for p in parts))
print("covid lung_opacity", sum("ARDS" in p for p in parts))
print("covid pneumonia", sum(any(x not in ("No Finding", "todo", "ARDS") for x in p) for p in parts))
print("covid unlabelled", sum(p == ["todo"] for p in parts))
