//! Watch errors in an operator's words.
use kube::runtime::watcher;

/// The HTTP status of the API's answer behind a watch error, if any.
pub fn status_code(err: &watcher::Error) -> Option<u16> {
    let inner = match err {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => return Some(status.code),
        _ => return None,
    };
    match inner {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// One sentence: what failed and, for a refusal, which permission the
/// agent's ServiceAccount lacks.
pub fn describe(err: &watcher::Error, resource: &str, group: &str) -> String {
    let what = if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") };
    match status_code(err) {
        Some(403) => format!(
            "forbidden: the agent may not list/watch {what} (its ClusterRole needs verbs get, list, watch on resource {resource:?} in API group {group:?}): {err}"
        ),
        Some(401) => format!("unauthorized: the API server refused the agent's credentials while watching {what}: {err}"),
        Some(404) => format!("{what} is not served by this API server: {err}"),
        Some(410) => format!("watch of {what} expired (410 Gone); listing again: {err}"),
        _ => format!("watching {what}: {err}"),
    }
}
