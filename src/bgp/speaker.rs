//! The BGP speaker task: sessions over TCP (listener and outgoing connections), one FSM per
//! connection and one RIB per process, configured from Calico's resources and feeding learned
//! routes to the dataplane.
//!
//! Contract: [`SpeakerHandle::spawn`] starts one actor task on the current tokio runtime that
//! owns every session, the RIB and the listeners; the handle talks to it over channels.
//! [`SpeakerHandle::update`] applies a new configuration without a Cease to any peer that stays
//! configured: OPEN parameters wait for the next connection, a new endpoint closes the
//! connection gracefully, and a policy change re-exports only the prefixes it concerns. [`SpeakerHandle::learned_routes`] carries the best
//! learned routes the kernel policy accepts, replaced whenever they change. Nothing received
//! from a peer can panic the task: malformed input becomes the codec's NOTIFICATION, a log line
//! and a counter.

mod actor;
mod learned;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::route_deltas::{self, DeltaReceiver, DeltaSender};
use crate::status::PeerStatus;
use starling_bgp::config::SpeakerConfig;
use starling_calc::services::RouteChanges;

/// Requests from the handle to the actor.
pub(crate) enum Command {
    Configure(Box<SpeakerConfig>),
    /// Per-Service addresses to start or stop originating (service advertisement).
    ServiceRoutes(RouteChanges),
    Status(oneshot::Sender<Vec<PeerStatus>>),
    Shutdown {
        graceful: bool,
        done: oneshot::Sender<()>,
    },
}

/// Handle to the running speaker.
pub struct SpeakerHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// The learned-route deltas when nobody else was given them at spawn.
    route_deltas: Option<DeltaReceiver>,
    task: tokio::task::JoinHandle<()>,
}

impl SpeakerHandle {
    /// Starts the speaker on the current tokio runtime; its learned-route deltas wait in
    /// [`SpeakerHandle::take_route_deltas`].
    pub fn spawn(initial: SpeakerConfig, metrics: Metrics) -> SpeakerHandle {
        let (sender, receiver) = route_deltas::channel();
        let mut handle = SpeakerHandle::spawn_feeding(initial, metrics, false, sender);
        handle.route_deltas = Some(receiver);
        handle
    }

    /// [`SpeakerHandle::spawn`] after a restart of this node whose routes stayed in the
    /// kernel: the OPENs carry the Restart State bit (RFC 4724 §3) so peers keep our routes
    /// until our End-of-RIB.
    pub fn spawn_restarting(initial: SpeakerConfig, metrics: Metrics) -> SpeakerHandle {
        let (sender, receiver) = route_deltas::channel();
        let mut handle = SpeakerHandle::spawn_feeding(initial, metrics, true, sender);
        handle.route_deltas = Some(receiver);
        handle
    }

    /// Starts the speaker sending learned-route deltas to `route_deltas` (the dataplane's).
    pub fn spawn_feeding(
        initial: SpeakerConfig,
        metrics: Metrics,
        restarting: bool,
        route_deltas: DeltaSender,
    ) -> SpeakerHandle {
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(actor::run(
            initial,
            metrics,
            restarting,
            receiver,
            route_deltas,
        ));
        SpeakerHandle {
            commands,
            route_deltas: None,
            task,
        }
    }

    /// The learned-route deltas of a speaker started with [`SpeakerHandle::spawn`] (once).
    pub fn take_route_deltas(&mut self) -> Option<DeltaReceiver> {
        self.route_deltas.take()
    }

    /// Applies a new configuration (sessions added, removed or changed; exports re-evaluated).
    pub fn update(&self, config: SpeakerConfig) {
        let _ = self.commands.send(Command::Configure(Box::new(config)));
    }

    /// Starts or stops originating per-Service addresses; only these prefixes are re-exported.
    pub fn advertise_services(&self, changes: RouteChanges) {
        if !changes.is_empty() {
            let _ = self.commands.send(Command::ServiceRoutes(changes));
        }
    }

    /// One row per session for `node status` and metrics.
    pub async fn status(&self) -> Vec<PeerStatus> {
        let (sender, receiver) = oneshot::channel();
        if self.commands.send(Command::Status(sender)).is_err() {
            return Vec::new();
        }
        receiver.await.unwrap_or_default()
    }

    /// Stops every session: with `graceful`, connections are closed without a Cease so peers
    /// keep our routes for the restart time (RFC 4724); otherwise a Cease NOTIFICATION is sent.
    pub async fn shutdown(self, graceful: bool) {
        let (done, finished) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { graceful, done })
            .is_ok()
        {
            let _ = finished.await;
        }
        let _ = self.task.await;
    }
}
