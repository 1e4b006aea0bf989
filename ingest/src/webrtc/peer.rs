//! One peer's task: feeds its `Rtc` the datagrams routed to it and the timeouts it asks for,
//! sends what it transmits on the shared socket (never waiting: a full socket buffer loses the
//! datagram, as the network would), and lets its role act on events and on its own work (a
//! viewer's next sample, a publisher's keyframe request). It ends on `DELETE` (cancel), when ICE
//! does not connect or goes silent for the timeout, on DTLS close, or when its role is done.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, IceCreds, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::play::Player;
use super::publish::Publisher;
use super::socket::Datagram;
use super::tcp::TcpLinks;

/// What the HTTP side asks of a running peer.
pub(crate) enum Command {
    /// An ICE restart: the client's new credentials; the reply carries ours.
    Restart { remote: IceCreds, reply: oneshot::Sender<IceCreds> },
}

pub(crate) struct PeerIo {
    pub commands: mpsc::Receiver<Command>,
    pub socket: Arc<UdpSocket>,
    /// The addresses the answer offered (host candidates), UDP and TCP: str0m takes a datagram
    /// only when its destination is one of them.
    pub candidates: Arc<[SocketAddr]>,
    pub tcp_candidates: Arc<[SocketAddr]>,
    pub tcp: Arc<TcpLinks>,
    pub inbox: mpsc::Receiver<Datagram>,
    pub timeout: Duration,
}

pub(crate) enum RoleState {
    Publish(Publisher),
    Play(Player),
}

/// What a role's own work was.
pub(crate) enum Work {
    Publish(super::publish::Work),
    Play(super::play::Work),
}

/// Why a peer ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Deleted,
    NeverConnected,
    Silent,
    Disconnected,
    Closed,
    Failed(String),
    Done(&'static str),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Deleted => f.write_str("deleted by the client"),
            Ended::NeverConnected => f.write_str("ICE/DTLS never connected"),
            Ended::Silent => f.write_str("the peer went silent"),
            Ended::Disconnected => f.write_str("ICE disconnected"),
            Ended::Closed => f.write_str("the peer closed the connection"),
            Ended::Failed(error) => write!(f, "failed: {error}"),
            Ended::Done(why) => f.write_str(why),
        }
    }
}

impl RoleState {
    /// An event from str0m; `Err` ends the peer.
    fn on_event(&mut self, rtc: &mut Rtc, event: Event) -> Result<(), Ended> {
        match self {
            RoleState::Publish(publisher) => publisher.on_event(rtc, event),
            RoleState::Play(player) => player.on_event(rtc, event),
        }
    }

    async fn next(&mut self) -> Work {
        match self {
            RoleState::Publish(publisher) => Work::Publish(publisher.next().await),
            RoleState::Play(player) => Work::Play(player.next().await),
        }
    }

    fn on_work(&mut self, rtc: &mut Rtc, work: Work) -> Result<(), Ended> {
        match (self, work) {
            (RoleState::Publish(publisher), Work::Publish(work)) => publisher.on_work(rtc, work),
            (RoleState::Play(player), Work::Play(work)) => player.on_work(rtc, work),
            _ => Ok(()),
        }
    }

    fn finish(&mut self) {
        if let RoleState::Publish(publisher) = self {
            publisher.finish();
        }
    }
}

pub(crate) async fn drive(rtc: &mut Rtc, mut role: RoleState, mut io: PeerIo, cancel: CancellationToken) -> Ended {
    let started = Instant::now();
    let mut connected = false;
    let mut last_heard = Instant::now();
    let ended = loop {
        let deadline = match pump(rtc, &mut role, &io, &mut connected) {
            Ok(deadline) => deadline,
            Err(ended) => break ended,
        };
        if !connected && started.elapsed() > io.timeout {
            break Ended::NeverConnected;
        }
        if connected && last_heard.elapsed() > io.timeout {
            break Ended::Silent;
        }
        // Wake at str0m's deadline, and at least every second for the checks above.
        let wake = deadline.min(Instant::now() + Duration::from_secs(1));
        let input = tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ended::Deleted,
            Some(command) = io.commands.recv() => {
                match command {
                    Command::Restart { remote, reply } => {
                        let local = IceCreds::new();
                        let mut direct = rtc.direct_api();
                        direct.set_local_ice_credentials(local.clone());
                        direct.set_remote_ice_credentials(remote);
                        let _ = reply.send(local);
                    }
                }
                None
            }
            datagram = io.inbox.recv() => match datagram {
                Some(datagram) => Some(datagram),
                None => break Ended::Done("the endpoint stopped"),
            },
            work = role.next() => {
                if let Err(ended) = role.on_work(rtc, work) {
                    break ended;
                }
                None
            }
            _ = tokio::time::sleep_until(wake.into()) => None,
        };
        let result = match input {
            Some(datagram) => {
                last_heard = datagram.at;
                match datagram.data.as_ref().try_into() {
                    Ok(contents) => rtc.handle_input(Input::Receive(
                        datagram.at,
                        Receive {
                            proto: datagram.proto,
                            source: datagram.source,
                            destination: match datagram.proto {
                                Protocol::Udp => destination(&io.candidates, datagram.source),
                                _ => destination(&io.tcp_candidates, datagram.source),
                            },
                            contents,
                        },
                    )),
                    // Not STUN, DTLS or (S)RTP: ignored.
                    Err(_) => Ok(()),
                }
            }
            None => rtc.handle_input(Input::Timeout(Instant::now())),
        };
        if let Err(error) = result {
            break Ended::Failed(error.to_string());
        }
    };
    role.finish();
    rtc.disconnect();
    // The last outputs (DTLS close_notify, RTCP BYE) go out, best effort.
    let _ = pump(rtc, &mut role, &io, &mut connected);
    io.inbox.close();
    ended
}

/// Which of our candidates a datagram from `source` was sent to. The socket may be bound to every
/// interface (or sit behind a 1:1 NAT), so the address it arrived at is not known: loopback
/// traffic went to the loopback candidate, other traffic to the first other one of its family.
pub(crate) fn destination(candidates: &[SocketAddr], source: SocketAddr) -> SocketAddr {
    let loopback = source.ip().is_loopback();
    candidates
        .iter()
        .find(|c| c.is_ipv4() == source.is_ipv4() && c.ip().is_loopback() == loopback)
        .or_else(|| candidates.iter().find(|c| c.is_ipv4() == source.is_ipv4()))
        .or(candidates.first())
        .copied()
        .unwrap_or(source)
}

/// Polls `rtc` until it asks for a timeout (returned), sending what it transmits and handing
/// events to the role.
fn pump(rtc: &mut Rtc, role: &mut RoleState, io: &PeerIo, connected: &mut bool) -> Result<Instant, Ended> {
    loop {
        if !rtc.is_alive() {
            return Err(Ended::Closed);
        }
        match rtc.poll_output().map_err(|error| Ended::Failed(error.to_string()))? {
            Output::Timeout(at) => return Ok(at),
            Output::Transmit(transmit) => {
                let sent = match transmit.proto {
                    Protocol::Udp => io.socket.try_send_to(&transmit.contents, transmit.destination).is_ok(),
                    _ => io.tcp.send(transmit.destination, &transmit.contents),
                };
                if !sent {
                    metrics::counter!("aether_webrtc_datagrams_unsent_total").increment(1);
                }
            }
            Output::Event(event) => match event {
                Event::Connected => {
                    *connected = true;
                    role.on_event(rtc, Event::Connected)?;
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return Err(Ended::Disconnected),
                Event::Closed => return Err(Ended::Closed),
                event => role.on_event(rtc, event)?,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::destination;
    use std::net::SocketAddr;

    #[test]
    fn datagrams_are_taken_as_sent_to_the_candidate_of_their_kind() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let candidates = [addr("10.0.0.5:8189"), addr("127.0.0.1:8189")];
        assert_eq!(destination(&candidates, addr("127.0.0.1:50000")), addr("127.0.0.1:8189"));
        assert_eq!(destination(&candidates, addr("192.168.1.9:50000")), addr("10.0.0.5:8189"));
        // Behind a 1:1 NAT only the public address is a candidate.
        assert_eq!(destination(&[addr("203.0.113.7:8189")], addr("127.0.0.1:1")), addr("203.0.113.7:8189"));
        assert_eq!(
            destination(&[addr("203.0.113.7:8189"), addr("[2001:db8::1]:8189")], addr("[2001:db8::9]:5")),
            addr("[2001:db8::1]:8189")
        );
    }
}
