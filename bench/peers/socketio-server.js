// Peer for the chat benchmark: a Socket.IO 4.8 room broadcast (`io.to(room).emit`), WebSocket
// transport only. Events: join(room) -> joined, send({room, text}) -> msg to the room.
const { createServer } = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 9002);
const http = createServer();
const io = new Server(http, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
let seq = 0;

io.on('connection', (socket) => {
  socket.on('join', (room) => {
    socket.join(room);
    socket.emit('joined', { room });
  });
  socket.on('send', (frame) => {
    io.to(frame.room).emit('msg', { room: frame.room, id: String(++seq), user: { name: 'peer', badges: [] }, text: frame.text, ts: Date.now() });
  });
});
http.listen(port, '127.0.0.1', () => console.log(`listening socketio=127.0.0.1:${port}`));
