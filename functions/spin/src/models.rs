//! The models the active pointers name, fetched from the object store and loaded by tract once
//! per instance, kept by sha256 and version (a canary may ship the same bytes under a new
//! version). `stellwerk sync` or the admin sync verified them before a pointer moved; loading
//! checks the sha256 and the golden input again, so bytes changed in the store since are
//! refused here too.
//!
//! Spin 4 runs a WASI HTTP 0.2 component in a fresh instance per request, so there every page
//! fetches and loads its models; a host that reuses instances loads each version once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use stellwerk_core::{ActivePointers, LoadedModel, Model, ModelPointer};

use crate::settings::Settings;
use crate::{state, store};

/// A model as this instance serves it.
pub struct InstanceModel {
    pub name: String,
    pub stable: Rc<Model>,
    pub candidate: Option<Rc<Model>>,
}

impl InstanceModel {
    pub fn loaded(&self) -> LoadedModel<'_> {
        LoadedModel {
            name: &self.name,
            stable: &self.stable,
            candidate: self.candidate.as_deref(),
        }
    }
}

thread_local! {
    /// Plans by `sha256/version`; `None` marks one that failed to load (not retried).
    static PLANS: RefCell<HashMap<String, Option<Rc<Model>>>> = RefCell::new(HashMap::new());
}

/// Every model the pointers name that loads; one that does not is left out and counted, and
/// the decision goes on without it.
pub async fn load(settings: &Settings, pointers: &ActivePointers, now: u64) -> Vec<InstanceModel> {
    let mut loaded = Vec::new();
    for (name, versions) in &pointers.models {
        let Some(stable) = plan(settings, &versions.stable, now).await else {
            continue;
        };
        let candidate = match &versions.candidate {
            Some(candidate) => plan(settings, candidate, now).await,
            None => None,
        };
        loaded.push(InstanceModel {
            name: name.clone(),
            stable,
            candidate,
        });
    }
    loaded
}

/// How many plans this instance holds (for the status route).
pub fn plans_held() -> usize {
    PLANS.with(|plans| plans.borrow().values().flatten().count())
}

async fn plan(settings: &Settings, pointer: &ModelPointer, now: u64) -> Option<Rc<Model>> {
    let key = format!("{}/{}", pointer.manifest.sha256, pointer.manifest.version);
    if let Some(cached) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return cached;
    }
    let loaded = match &settings.object_store {
        Ok(object_store) => match store::get(object_store, &pointer.model_key, now).await {
            Ok(Some(bytes)) => {
                Model::load(pointer.manifest.clone(), &bytes).map_err(|e| e.to_string())
            }
            Ok(None) => Err("object not found".into()),
            Err(error) => Err(error),
        },
        Err(error) => Err(error.clone()),
    };
    let plan = match loaded {
        Ok(model) => Some(Rc::new(model)),
        Err(reason) => {
            eprintln!("stellwerk: model {} refused: {reason}", pointer.model_key);
            state::fallback("model_load");
            None
        }
    };
    PLANS.with(|plans| plans.borrow_mut().insert(key, plan.clone()));
    plan
}
