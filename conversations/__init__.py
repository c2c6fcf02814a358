"""The product's rules, platform-free: rituals, the conversation engine, commands and messages."""
