// Peer for the chat benchmark: a plain `ws` room broadcast speaking the subset of Aether's chat
// protocol the load generator uses (join, send -> msg to every member). One JSON.stringify per
// message; the same string is sent to every socket in the room.
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9001);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
const rooms = new Map();
let seq = 0;

wss.on('connection', (socket) => {
  const joined = new Set();
  socket.on('message', (data) => {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame.type === 'join') {
      if (!rooms.has(frame.room)) rooms.set(frame.room, new Set());
      rooms.get(frame.room).add(socket);
      joined.add(frame.room);
      socket.send(JSON.stringify({ type: 'joined', room: frame.room, history: [], presence: { count: rooms.get(frame.room).size } }));
    } else if (frame.type === 'send' && joined.has(frame.room)) {
      const message = JSON.stringify({ type: 'msg', room: frame.room, id: String(++seq), user: { name: 'peer', badges: [] }, text: frame.text, ts: Date.now() });
      for (const member of rooms.get(frame.room)) member.send(message);
    }
  });
  socket.on('close', () => { for (const room of joined) rooms.get(room)?.delete(socket); });
});
console.log(`listening ws=127.0.0.1:${port}`);
