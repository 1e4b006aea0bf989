// The video player: hls.js where Media Source Extensions exist (with its low-latency mode for
// LL-HLS), the browser's own HLS otherwise; quality menu, volume, fullscreen, live latency.

import type Hls from 'hls.js';
import { h } from './dom';

export interface PlayerOptions {
  src: string;
  live: boolean;
  muted?: boolean;
  poster?: string;
  /// A small preview: muted, lowest quality, no controls.
  preview?: boolean;
  /// The stream could not be played (offline, gone).
  onFatal?: (reason: string) => void;
}

export interface Player {
  el: HTMLElement;
  video: HTMLVideoElement;
  destroy(): void;
}

export function createPlayer(options: PlayerOptions): Player {
  const video = h('video', { playsinline: true, preload: 'auto', poster: options.poster ?? null });
  video.muted = options.muted ?? !!options.preview;
  const el = h('div', { class: options.preview ? 'player preview' : 'player', tabindex: options.preview ? null : 0 }, video);
  let hls: Hls | undefined;
  let destroyed = false;
  let timer = 0;

  const playButton = h('button', { type: 'button', class: 'icon', 'aria-label': 'Pause' }, '❚❚');
  const muteButton = h('button', { type: 'button', class: 'icon', 'aria-label': 'Mute' }, '🔊');
  const volume = h('input', { type: 'range', min: 0, max: 1, step: 0.05, value: 1, 'aria-label': 'Volume', class: 'volume' });
  const latency = h('span', { class: 'latency', 'aria-live': 'off' });
  const liveBadge = h('button', { type: 'button', class: 'live-badge', title: 'Jump to live' }, 'LIVE');
  const quality = h('select', { 'aria-label': 'Quality', class: 'quality' }, h('option', { value: '-1' }, 'Auto'));
  const fullscreen = h('button', { type: 'button', class: 'icon', 'aria-label': 'Full screen' }, '⛶');
  const notice = h('div', { class: 'player-notice', hidden: true });

  if (!options.preview) {
    const controls = h(
      'div',
      { class: 'controls' },
      playButton,
      muteButton,
      volume,
      options.live ? [liveBadge, latency] : null,
      h('span', { class: 'spacer' }),
      quality,
      fullscreen,
    );
    el.append(notice, controls);
  }

  const syncPlay = () => {
    playButton.textContent = video.paused ? '▶' : '❚❚';
    playButton.setAttribute('aria-label', video.paused ? 'Play' : 'Pause');
  };
  const syncMute = () => {
    const muted = video.muted || video.volume === 0;
    muteButton.textContent = muted ? '🔇' : '🔊';
    muteButton.setAttribute('aria-label', muted ? 'Unmute' : 'Mute');
    volume.value = String(video.muted ? 0 : video.volume);
  };
  video.addEventListener('play', syncPlay);
  video.addEventListener('pause', syncPlay);
  video.addEventListener('volumechange', syncMute);
  playButton.addEventListener('click', () => (video.paused ? play() : video.pause()));
  muteButton.addEventListener('click', () => {
    video.muted = !video.muted;
    if (!video.muted && video.volume === 0) video.volume = 0.5;
    notice.hidden = true;
  });
  volume.addEventListener('input', () => {
    video.volume = Number(volume.value);
    video.muted = video.volume === 0;
  });
  fullscreen.addEventListener('click', toggleFullscreen);
  liveBadge.addEventListener('click', () => {
    const edge = hls?.liveSyncPosition;
    if (edge) video.currentTime = edge;
    else if (video.seekable.length) video.currentTime = video.seekable.end(video.seekable.length - 1) - 1;
    play();
  });
  el.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
    if (event.key === ' ' || event.key === 'k') {
      event.preventDefault();
      if (video.paused) play();
      else video.pause();
    } else if (event.key === 'm') {
      video.muted = !video.muted;
    } else if (event.key === 'f') {
      toggleFullscreen();
    }
  });
  video.addEventListener('click', () => (video.paused ? play() : video.pause()));
  video.addEventListener('dblclick', toggleFullscreen);

  function toggleFullscreen(): void {
    if (document.fullscreenElement) void document.exitFullscreen();
    else void el.requestFullscreen?.().catch(() => undefined);
  }

  function play(): void {
    video.play().catch(() => {
      // Autoplay with sound is refused until the viewer interacts: start muted, say so.
      if (!video.muted) {
        video.muted = true;
        notice.textContent = 'Muted: press the sound button to listen.';
        notice.hidden = false;
        video.play().catch(() => undefined);
      }
    });
  }

  function fillQualities(levels: { height: number; bitrate: number }[]): void {
    quality.replaceChildren(h('option', { value: '-1' }, 'Auto'));
    levels
      .map((level, index) => ({ level, index }))
      .sort((a, b) => b.level.height - a.level.height || b.level.bitrate - a.level.bitrate)
      .forEach(({ level, index }) =>
        quality.append(h('option', { value: index }, level.height ? `${level.height}p` : `${Math.round(level.bitrate / 1000)} kbps`)),
      );
  }

  function tick(): void {
    if (!options.live || options.preview) return;
    let seconds: number | undefined;
    const date = hls?.playingDate;
    if (date) seconds = (Date.now() - date.getTime()) / 1000;
    else if (hls && Number.isFinite(hls.latency)) seconds = hls.latency;
    latency.textContent = seconds !== undefined && seconds >= 0 ? `${seconds.toFixed(1)} s behind` : '';
    if (hls && quality.value === '-1' && hls.currentLevel >= 0) {
      const current = hls.levels[hls.currentLevel];
      (quality.options[0] as HTMLOptionElement).textContent = current?.height ? `Auto (${current.height}p)` : 'Auto';
    }
  }

  async function start(): Promise<void> {
    const { default: HlsClass } = await import('hls.js');
    if (destroyed) return;
    if (HlsClass.isSupported()) {
      const player = new HlsClass({
        lowLatencyMode: options.live,
        backBufferLength: options.live ? 30 : 90,
        capLevelToPlayerSize: !!options.preview,
        startLevel: options.preview ? 0 : -1,
        manifestLoadingMaxRetry: 2,
      });
      hls = player;
      let networkRetries = 0;
      player.on(HlsClass.Events.MANIFEST_PARSED, (_event, data) => {
        fillQualities(data.levels);
        if (options.preview) player.autoLevelCapping = 0;
        play();
      });
      player.on(HlsClass.Events.FRAG_LOADED, () => {
        networkRetries = 0;
      });
      player.on(HlsClass.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        if (data.type === HlsClass.ErrorTypes.MEDIA_ERROR) {
          player.recoverMediaError();
        } else if (data.type === HlsClass.ErrorTypes.NETWORK_ERROR && networkRetries++ < 5) {
          window.setTimeout(() => !destroyed && player.startLoad(), 1000 * networkRetries);
        } else {
          options.onFatal?.(data.details);
        }
      });
      quality.addEventListener('change', () => {
        player.currentLevel = Number(quality.value);
        (quality.options[0] as HTMLOptionElement).textContent = 'Auto';
      });
      player.loadSource(options.src);
      player.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      quality.disabled = true;
      video.src = options.src;
      video.addEventListener('error', () => options.onFatal?.('media error'));
      play();
    } else {
      options.onFatal?.('This browser cannot play HLS.');
    }
  }

  void start();
  timer = window.setInterval(tick, 1000);
  syncPlay();
  syncMute();

  return {
    el,
    video,
    destroy() {
      destroyed = true;
      window.clearInterval(timer);
      hls?.destroy();
      video.removeAttribute('src');
      video.load();
    },
  };
}
