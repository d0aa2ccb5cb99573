//! The control routes' bearer-token check.

/// Whether an `Authorization` header carries `Bearer <token>` for the configured admin token.
/// An empty configured token authorizes nobody. The comparison does not stop at the first
/// differing byte, so its timing does not reveal how much of a guess was right.
pub fn is_admin(authorization: Option<&str>, admin_token: &str) -> bool {
    let Some(presented) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let expected = admin_token.as_bytes();
    let presented = presented.trim().as_bytes();
    if expected.is_empty() || presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        assert!(is_admin(Some("Bearer s3cret"), "s3cret"));
        assert!(!is_admin(Some("Bearer s3creT"), "s3cret"));
        assert!(!is_admin(Some("Bearer s3cre"), "s3cret"));
        assert!(!is_admin(Some("Bearer s3crett"), "s3cret"));
        assert!(!is_admin(Some("s3cret"), "s3cret"));
        assert!(!is_admin(Some("Basic s3cret"), "s3cret"));
        assert!(!is_admin(None, "s3cret"));
    }

    #[test]
    fn an_unset_token_authorizes_nobody() {
        assert!(!is_admin(Some("Bearer "), ""));
        assert!(!is_admin(Some("Bearer x"), ""));
    }
}
