//! Streaming HTML rewriting with lol_html: chunk in, chunk out, never the whole page.
//!
//! STUB — to be implemented (see the helper's brief).

/// Checks that lol_html can match this CSS selector.
pub fn check_selector(selector: &str) -> Result<(), String> {
    if selector.trim().is_empty() {
        Err("invalid CSS selector".to_owned())
    } else {
        Ok(())
    }
}
