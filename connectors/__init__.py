"""Task sources (Jira, Feishu Tasks, DingTalk todos) turned into TaskRecords; arrives in step 6."""
