//! A chat WebSocket client for tests: connect (anonymous or with a token), send frames, wait for
//! the next frame of a type.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::TestApp;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Ws {
    pub socket: Socket,
}

impl Ws {
    pub async fn connect(app: &TestApp, token: Option<&str>) -> Ws {
        let url = match token {
            Some(token) => format!("ws://{}/ws?token={token}", app.addr),
            None => format!("ws://{}/ws", app.addr),
        };
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("the upgrade succeeds");
        Ws { socket }
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket.send(Message::text(frame.to_string())).await.unwrap();
    }

    pub async fn raw(&mut self, message: Message) {
        self.socket.send(message).await.unwrap();
    }

    /// The next frame of `kind`, skipping others (presence, notices, ...).
    pub async fn next(&mut self, kind: &str) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} frame within 5 s"))
                .expect("the socket is open")
                .expect("a frame");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == kind {
                    return value;
                }
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room})).await;
        self.next("joined").await
    }

    pub async fn say(&mut self, room: &str, text: &str) -> Value {
        self.send(json!({"type": "send", "room": room, "text": text})).await;
        loop {
            let message = self.next("msg").await;
            if message["text"] == text {
                return message;
            }
        }
    }
}
