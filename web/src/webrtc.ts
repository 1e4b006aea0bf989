// WHIP (publish) and WHEP (play) from the browser: one RTCPeerConnection, the offer POSTed as
// application/sdp, the answer applied, DELETE on the session resource to end. The server is
// ICE-lite with its address in the answer, so the offer goes at once (no candidate gathering).
// H.264 is preferred, since that is what the server takes and what HLS needs.

export interface RtcSession {
  pc: RTCPeerConnection;
  /// Ends the session: DELETE on the resource, then closes the connection.
  stop(): Promise<void>;
}

function iceServers(urls: string[]): RTCIceServer[] {
  return urls.length ? [{ urls }] : [];
}

function preferH264(transceiver: RTCRtpTransceiver, kind: 'sender' | 'receiver'): void {
  const capabilities = kind === 'sender' ? RTCRtpSender.getCapabilities('video') : RTCRtpReceiver.getCapabilities('video');
  if (!capabilities || !('setCodecPreferences' in transceiver)) return;
  const h264 = capabilities.codecs.filter((codec) => codec.mimeType.toLowerCase() === 'video/h264');
  // Packetization mode 1 first (what every sender uses), then the rest of H.264.
  h264.sort((a, b) => Number(!/packetization-mode=1/.test(a.sdpFmtpLine ?? '')) - Number(!/packetization-mode=1/.test(b.sdpFmtpLine ?? '')));
  const repair = capabilities.codecs.filter((codec) => /video\/(rtx|red|ulpfec)/i.test(codec.mimeType));
  if (h264.length) transceiver.setCodecPreferences([...h264, ...repair]);
}

async function negotiate(pc: RTCPeerConnection, url: string, headers: Record<string, string>): Promise<string> {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...headers },
    body: offer.sdp,
  });
  if (response.status !== 201) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = ((await response.json()) as { error: { message: string } }).error.message;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  const location = new URL(response.headers.get('Location') ?? '', url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  return location;
}

function session(pc: RTCPeerConnection, location: string): RtcSession {
  let stopped = false;
  return {
    pc,
    async stop() {
      if (stopped) return;
      stopped = true;
      // DELETE first: closing first ends the session on the server (DTLS close), and the DELETE
      // would find nothing.
      await fetch(location, { method: 'DELETE' }).catch(() => undefined);
      pc.close();
    },
  };
}

/// Publishes `stream` (its audio and video tracks) to the channel of `streamKey`.
export async function whipPublish(url: string, streamKey: string, stream: MediaStream, servers: string[] = []): Promise<RtcSession> {
  const pc = new RTCPeerConnection({ iceServers: iceServers(servers) });
  try {
    for (const track of stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      if (track.kind === 'video') {
        preferH264(transceiver, 'sender');
        // The HLS ladder is planned on the picture size: keep it, lower the frame rate instead.
        const parameters = transceiver.sender.getParameters();
        parameters.degradationPreference = 'maintain-resolution';
        await transceiver.sender.setParameters(parameters).catch(() => undefined);
      }
    }
    return session(pc, await negotiate(pc, url, { Authorization: `Bearer ${streamKey}` }));
  } catch (error) {
    pc.close();
    throw error;
  }
}

/// Plays a channel over WHEP into `video`.
export async function whepPlay(url: string, video: HTMLVideoElement, servers: string[] = []): Promise<RtcSession> {
  const pc = new RTCPeerConnection({ iceServers: iceServers(servers) });
  const stream = new MediaStream();
  pc.addEventListener('track', (event) => {
    stream.addTrack(event.track);
    video.srcObject = stream;
  });
  try {
    pc.addTransceiver('audio', { direction: 'recvonly' });
    preferH264(pc.addTransceiver('video', { direction: 'recvonly' }), 'receiver');
    return session(pc, await negotiate(pc, url, {}));
  } catch (error) {
    pc.close();
    throw error;
  }
}

/// Resolves once the connection is up; rejects when it fails or takes longer than `ms`.
export function connected(pc: RTCPeerConnection, ms = 10000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = window.setTimeout(() => reject(new Error('WebRTC did not connect in time')), ms);
    const check = () => {
      if (pc.connectionState === 'connected') {
        window.clearTimeout(timer);
        resolve();
      } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        window.clearTimeout(timer);
        reject(new Error(`WebRTC ${pc.connectionState}`));
      }
    };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}
