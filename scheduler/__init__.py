"""Time: APScheduler wiring, calendars, the planner, reminders and leader election; arrives in step 3."""
