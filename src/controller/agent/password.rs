//! The server password: 32 random bytes in Secret `<agent>-server-auth`, created once, read
//! from the watch cache, never logged; its digest goes into the pod template so a new
//! password (the Secret deleted) rolls the server, which reads it at start.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::ReconcileError;
use crate::api::Agent;
use crate::controller::{Context, FIELD_MANAGER, pod, stores};

/// A generated server password (an Agent's, or a templateRef Task's): 32 random bytes,
/// URL-safe base64.
pub(crate) fn new_password() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A Secret's value under `key`, as text.
pub(crate) fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// A short SHA-256 digest of the password for the pod template: it changes with the password
/// and tells nothing about it.
pub(super) fn digest(password: &str) -> String {
    super::apply::sha256_hex(password.as_bytes())
}

/// The server password from the cached `<agent>-server-auth`, creating the Secret when it is
/// missing. Never logged.
pub(super) async fn ensure_password(
    ctx: &Context,
    agent: &Agent,
    ns: &str,
) -> Result<String, ReconcileError> {
    let name = pod::auth_secret_name(&agent.name_any());
    let object = format!("Secret {ns}/{name}");
    if let Some(existing) = stores::get(&ctx.stores.secrets, ns, &name) {
        return secret_string(&existing, pod::PASSWORD_KEY)
            .filter(|p| !p.is_empty())
            .ok_or(ReconcileError::BadPassword(object));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let password = new_password().map_err(|e| ReconcileError::Randomness(e.to_string()))?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match secrets
        .create(&params, &pod::auth_secret(agent, &password))
        .await
    {
        Ok(_) => Ok(password),
        // Made meanwhile (the cache had not seen it yet): the watch brings it back to us.
        Err(kube::Error::Api(s)) if s.code == 409 => Err(ReconcileError::NotCachedYet(object)),
        Err(source) => Err(ReconcileError::Password { object, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_distinct() {
        let a = new_password().expect("random");
        let b = new_password().expect("random");
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
