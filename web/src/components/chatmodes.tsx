// The chat's modes, for the channel's owner and moderators: slow mode and followers-only (with
// how long one must have followed). They last while the room is in memory.

const SLOW: [number, string][] = [
  [0, 'Off'],
  [3, '3 s'],
  [10, '10 s'],
  [30, '30 s'],
  [120, '2 min'],
];

const FOLLOWERS: [number | null, string][] = [
  [null, 'Off'],
  [0, 'Any follower'],
  [10, 'Followers of 10 min'],
  [60, 'Followers of 1 hour'],
  [1440, 'Followers of 1 day'],
  [10080, 'Followers of 1 week'],
  [129600, 'Followers of 3 months'],
];

export function ChatModes({ room, command }: { room: string; command: (frame: object) => boolean }) {
  return (
    <div class="chat-modes">
      <label>
        Slow mode{' '}
        <select aria-label="Slow mode" onChange={(e) => command({ type: 'slow', room, seconds: Number((e.currentTarget as HTMLSelectElement).value) })}>
          {SLOW.map(([seconds, label]) => (
            <option value={seconds} key={seconds}>
              {label}
            </option>
          ))}
        </select>
      </label>
      <label>
        Followers-only{' '}
        <select
          aria-label="Followers-only"
          onChange={(e) => {
            const value = (e.currentTarget as HTMLSelectElement).value;
            command({ type: 'followers_only', room, minutes: value === '' ? null : Number(value) });
          }}
        >
          {FOLLOWERS.map(([minutes, label]) => (
            <option value={minutes ?? ''} key={label}>
              {label}
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}
