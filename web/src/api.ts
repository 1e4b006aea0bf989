// The JSON API, with the session cookie and the CSRF header on writes.

import { currentUser } from './state';

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface User {
  id: number;
  username: string;
  email: string;
  role: string;
  created_at: number;
  email_verified_at: number | null;
}

export type FollowLevel = 'all' | 'live' | 'off';

export interface FollowState {
  followers: number;
  following: boolean | null;
  followed_at: number | null;
  notify: FollowLevel | null;
}

export interface Notification {
  id: number;
  kind: 'go_live' | 'new_follower' | 'mention';
  data: Record<string, string>;
  created_at: number;
  read_at: number | null;
}

export interface Listing<T> {
  items: T[];
  next_cursor: string | null;
}

export interface StreamInfo {
  state: 'live' | 'reconnecting';
  started_at: number;
  bitrate_kbps: number;
  width: number;
  height: number;
  frame_rate: number | null;
  keyframe_interval_secs: number | null;
  video_codec: string | null;
  audio: string | null;
  renditions: string[];
  webrtc_viewers: number;
  warnings: { code: string; message: string }[];
}

export interface Channel {
  name: string;
  title: string;
  category: string;
  tags: string[];
  owner: string;
  live: boolean;
  viewers: number;
  record: boolean;
  created_at: number;
  thumbnail_url: string | null;
  stream?: StreamInfo;
}

export type Visibility = 'private' | 'unlisted' | 'public';

export interface Vod {
  id: string;
  channel: string;
  title: string;
  status: 'recording' | 'ready';
  visibility: Visibility;
  duration_ms: number;
  created_at: number;
  playback_url: string;
  thumbnail_url: string;
}

export interface Clip {
  id: string;
  channel: string;
  creator: string;
  vod_id: string | null;
  title: string;
  status: 'processing' | 'ready' | 'failed';
  failure: string | null;
  start_ms: number;
  duration_ms: number;
  playback_url: string | null;
  download_url: string | null;
  thumbnail_url: string | null;
  created_at: number;
}

export interface ServerInfo {
  rtmp: { host: string | null; port: number; app: string };
  features: { transcoding: boolean; recording: boolean; clips: boolean; webrtc: boolean };
  webrtc: { whip: string; whep: string; ice_servers: string[] };
  chat: { max_message_chars: number };
}

function cookie(name: string): string | undefined {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return decodeURIComponent(rest.join('='));
  }
  return undefined;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  // A file goes as it is (a picture upload); anything else as JSON.
  const raw = body instanceof Blob;
  if (body !== undefined && !raw) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') {
    const csrf = cookie('aether_csrf');
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!response.ok) {
    const error = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(response.status, error?.code ?? 'http_error', error?.message ?? `HTTP ${response.status}`);
  }
  return data as T;
}

let current: User | null | undefined;

/// The signed-in user, or null (asked once per page load, then after sign-in/out).
export async function me(): Promise<User | null> {
  if (current !== undefined) return current;
  current = await askMe();
  currentUser.value = current;
  return current;
}

async function askMe(): Promise<User | null> {
  // Signed-in browsers hold the CSRF cookie beside the session cookie: without it there is no
  // session to ask about (and no 401 to log).
  if (!cookie('aether_csrf')) return null;
  try {
    return (await api<{ user: User }>('GET', '/api/v1/me')).user;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

/// Asks the server again (after a change to the account).
export async function reloadMe(): Promise<User | null> {
  current = undefined;
  return me();
}

export function setMe(user: User | null): void {
  current = user;
  currentUser.value = user;
}

/// The message of a failed call, for a form or a toast.
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : 'Something went wrong; try again.';
}

let info: Promise<ServerInfo> | undefined;

export function serverInfo(): Promise<ServerInfo> {
  info ??= api<ServerInfo>('GET', '/api/v1/server');
  return info;
}
