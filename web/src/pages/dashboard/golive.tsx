// "Go live from the browser": the camera and microphone, or a screen, published over WHIP with
// the channel's stream key (the one this browser keeps, or one pasted in), with a preview.

import { useEffect, useRef, useState } from 'preact/hooks';
import { messageOf, type Channel, type ServerInfo } from '../../api';
import { toast } from '../../toast';
import { connected, whipPublish, type RtcSession } from '../../webrtc';
import { Card, storedKey } from './panels';

type Source = 'camera' | 'screen';

async function capture(source: Source): Promise<MediaStream> {
  if (source === 'screen') return navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: true });
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    audio: true,
  });
}

export function BrowserPublishPanel({ channel, info }: { channel: Channel; info: ServerInfo }) {
  const [source, setSource] = useState<Source>('camera');
  const [pasted, setPasted] = useState('');
  const [state, setState] = useState<'idle' | 'starting' | 'live'>('idle');
  const preview = useRef<HTMLVideoElement>(null);
  const running = useRef<{ session?: RtcSession; media?: MediaStream }>({});
  const known = storedKey(channel.name);

  const stop = async () => {
    const { session, media } = running.current;
    running.current = {};
    media?.getTracks().forEach((track) => track.stop());
    if (preview.current) preview.current.srcObject = null;
    setState('idle');
    await session?.stop();
  };
  useEffect(() => () => void stop(), []);

  const start = async () => {
    const key = known ?? pasted.trim();
    if (!key) {
      toast('Paste the stream key first (or reset it in OBS settings to get one here).', 'error');
      return;
    }
    if (!navigator.mediaDevices) {
      toast('This page needs HTTPS (or localhost) to use the camera.', 'error');
      return;
    }
    setState('starting');
    try {
      const media = await capture(source);
      running.current.media = media;
      if (preview.current) preview.current.srcObject = media;
      const session = await whipPublish(new URL(info.webrtc.whip, location.origin).toString(), key, media, info.webrtc.ice_servers);
      running.current.session = session;
      await connected(session.pc);
      session.pc.addEventListener('connectionstatechange', () => {
        if (session.pc.connectionState === 'failed') {
          toast('The connection to the server was lost.', 'error');
          void stop();
        }
      });
      // Ending the screen share from the browser's own bar ends the broadcast too.
      media.getVideoTracks()[0]?.addEventListener('ended', () => void stop());
      setState('live');
    } catch (error) {
      toast(messageOf(error), 'error');
      await stop();
    }
  };

  return (
    <Card title="Go live from the browser">
      <p class="muted">No OBS needed: your camera and microphone, or a screen, straight from this page (WebRTC).</p>
      <div class="field">
        <label for="golive-source">Source</label>
        <select
          id="golive-source"
          value={source}
          disabled={state !== 'idle'}
          onChange={(event) => setSource((event.currentTarget as HTMLSelectElement).value as Source)}
        >
          <option value="camera">Camera and microphone</option>
          <option value="screen">Screen</option>
        </select>
      </div>
      {!known && (
        <div class="field">
          <label for="golive-key">Stream key</label>
          <input
            id="golive-key"
            type="password"
            autocomplete="off"
            value={pasted}
            onInput={(event) => setPasted((event.currentTarget as HTMLInputElement).value)}
          />
        </div>
      )}
      <video ref={preview} class="golive-preview" muted playsInline autoPlay hidden={state === 'idle'} aria-label="Your camera preview" />
      <p role="status" data-testid="golive-state">
        {state === 'live' ? 'Publishing from this browser' : state === 'starting' ? 'Connecting…' : ''}
      </p>
      {state === 'idle' ? (
        <button type="button" class="primary" onClick={() => void start()}>
          Go live from the browser
        </button>
      ) : (
        <button type="button" class="danger" onClick={() => void stop()}>
          Stop
        </button>
      )}
    </Card>
  );
}
