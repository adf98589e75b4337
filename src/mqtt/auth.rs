//! Authentication and authorization hooks. The broker asks these on CONNECT,
//! PUBLISH and SUBSCRIBE; the default allows everything. Password files, JWT,
//! HTTP and database-backed providers plug in here in a later issue.

use std::net::SocketAddr;

/// What the authenticator sees of a CONNECT.
pub struct AuthRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub peer: SocketAddr,
}

/// Outcome of authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Allow,
    /// CONNACK 0x86 (bad user name or password).
    BadCredentials,
    /// CONNACK 0x87 (not authorized).
    NotAuthorized,
}

/// The action being authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        }
    }
}

/// Authentication and authorization provider.
pub trait Auth: Send + Sync + 'static {
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthResult;
    fn authorize(&self, client_id: &str, username: Option<&str>, action: Action, topic: &str) -> bool;
}

/// The default provider: everyone may connect, publish and subscribe.
pub struct AllowAll;

impl Auth for AllowAll {
    fn authenticate(&self, _req: &AuthRequest<'_>) -> AuthResult {
        AuthResult::Allow
    }

    fn authorize(&self, _client_id: &str, _username: Option<&str>, _action: Action, _topic: &str) -> bool {
        true
    }
}
