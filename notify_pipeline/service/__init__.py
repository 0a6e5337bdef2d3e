"""The long-running web service Meta calls (`notify-pipeline serve`): thin routes over plain
modules (receipts/ for what the webhooks carry)."""
