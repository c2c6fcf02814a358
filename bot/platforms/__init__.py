"""Chat platform adapters behind one interface: console now; Slack, Feishu and DingTalk next."""
