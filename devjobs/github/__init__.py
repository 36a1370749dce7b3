"""devjobs' reporting to GitHub: commit statuses (`statuses`)."""
