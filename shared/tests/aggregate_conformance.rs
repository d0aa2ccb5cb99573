//! Runs `tests/conformance/aggregate/*.json`: batches folded into posteriors, with the report
//! of every batch, the counts, the remembered ids and the Thompson probabilities.

mod common;

use stellwerk_core::{Event, PosteriorSnapshot, Snapshot, apply_events};

#[test]
fn aggregate_vectors() {
    let all = common::vectors("aggregate");
    assert!(all.len() >= 2, "only {} aggregate vectors", all.len());
    for (path, v) in all {
        let snapshot = Snapshot::from_value(v["snapshot"].clone())
            .unwrap_or_else(|e| panic!("{path}: snapshot refused: {e}"));
        let mut posteriors = match v.get("posteriors") {
            Some(p) => PosteriorSnapshot::parse(p.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{path}: posteriors refused: {e}")),
            None => PosteriorSnapshot::default(),
        };
        let now = v["now"].as_u64().unwrap();
        let expect = &v["expect"];
        for (i, batch) in v["batches"].as_array().unwrap().iter().enumerate() {
            let events: Vec<Event> = batch
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    Event::from_json(e.to_string().as_bytes())
                        .unwrap_or_else(|err| panic!("{path}: event refused: {err}"))
                })
                .collect();
            let report = apply_events(&mut posteriors, &events, &snapshot, now);
            assert_eq!(
                serde_json::to_value(report).unwrap(),
                expect["reports"][i],
                "{path}: batch {i}"
            );
        }
        assert_eq!(
            Some(posteriors.version),
            expect["version"].as_u64(),
            "{path}"
        );
        assert_eq!(
            Some(posteriors.applied_since),
            expect["appliedSince"].as_u64(),
            "{path}"
        );
        if let Some(ids) = expect.get("appliedIds") {
            let got: Vec<&String> = posteriors.applied.keys().collect();
            assert_eq!(serde_json::to_value(got).unwrap(), *ids, "{path}");
        }
        for (key, want) in expect["experiments"].as_object().unwrap() {
            let got = &posteriors.experiments[key];
            assert_eq!(
                serde_json::to_value(&got.arms).unwrap(),
                want["arms"],
                "{path}: {key}"
            );
            assert_eq!(
                Some(got.quarantined),
                want["quarantined"].as_u64(),
                "{path}: {key}"
            );
            if let Some(p) = want.get("probabilities") {
                let tolerance = want["probabilitiesTolerance"].as_f64().unwrap();
                let want: Vec<f64> = serde_json::from_value(p.clone()).unwrap();
                let got: Vec<f64> = got.probabilities.values().copied().collect();
                assert_eq!(got.len(), want.len(), "{path}: {key}");
                assert!(
                    (got.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                    "{path}: {key}"
                );
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= tolerance,
                        "{path}: {key}: {got:?} vs {want:?}"
                    );
                }
            } else {
                assert!(got.probabilities.is_empty(), "{path}: {key}");
            }
        }
        // The stored document round-trips through KV.
        assert_eq!(
            PosteriorSnapshot::parse(posteriors.to_json().as_bytes()).as_ref(),
            Ok(&posteriors),
            "{path}"
        );
    }
}
