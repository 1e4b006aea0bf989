// The real-time player: the channel over WHEP (WebRTC, well under a second behind) in a plain
// video element with the browser's controls. When WebRTC cannot connect or stops, `onFail` is
// told, and the page falls back to HLS.

import { h } from './dom';
import { connected, whepPlay, type RtcSession } from './webrtc';

export interface RtcPlayerOptions {
  url: string;
  iceServers: string[];
  onFail: (reason: string) => void;
}

export function createRtcPlayer(options: RtcPlayerOptions): { el: HTMLElement; video: HTMLVideoElement; destroy(): void } {
  const video = h('video', { playsinline: true, autoplay: true, controls: true, 'data-testid': 'rtc-video' });
  const el = h('div', { class: 'player realtime' }, video);
  let session: RtcSession | undefined;
  let destroyed = false;
  const fail = (reason: string) => {
    if (destroyed) return;
    destroyed = true;
    void session?.stop();
    options.onFail(reason);
  };
  video.addEventListener('loadedmetadata', () => {
    // Sound if the browser allows it, else muted (the controls unmute).
    video.play().catch(() => {
      video.muted = true;
      void video.play().catch(() => undefined);
    });
  });
  whepPlay(options.url, video, options.iceServers)
    .then(async (started) => {
      session = started;
      if (destroyed) return void started.stop();
      await connected(started.pc);
      started.pc.addEventListener('connectionstatechange', () => {
        if (started.pc.connectionState === 'failed' || started.pc.connectionState === 'disconnected') fail('WebRTC connection lost');
      });
    })
    .catch((error: unknown) => fail(error instanceof Error ? error.message : String(error)));
  return {
    el,
    video,
    destroy() {
      destroyed = true;
      void session?.stop();
      video.srcObject = null;
    },
  };
}
