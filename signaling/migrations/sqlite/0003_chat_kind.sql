-- 'chat' for what people write; 'system' for lines the meeting records
-- itself (host actions: "Ada removed Bob"), shown apart in the chat.
ALTER TABLE chat_messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat';
