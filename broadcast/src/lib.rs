//! The broadcast side of EmoStream: WebSocket broadcasters that consume the `clusterN`
//! topics and push every closed window to the registered clients of their cluster, and the
//! live web page.
//!
//! # Layout
//! - [`topics`]: the cluster topics a broadcaster serves.

pub mod topics {
    //! The topics read by the broadcasters.

    /// The topic a broadcaster of cluster `n` (1-based) consumes.
    pub fn cluster_topic(n: u32) -> String {
        model::names::cluster_topic(n)
    }
}
