#!/usr/bin/env python3
"""Writes REPORT/summary.md from the figures the fault tests wrote to REPORT/raw/*.json,
the test results (raw/tests.txt) and the page test's log (raw/page.log)."""

import json
import pathlib
import re
import sys


def load(raw, name):
    path = raw / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def statuses(counts):
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def main():
    report = pathlib.Path(sys.argv[1])
    raw = report / "raw"
    out = ["# Chaos run", ""]
    out += [line + "  " for line in (report / "machine.txt").read_text().splitlines()]
    out += ["", "Commands:", ""]
    out += [f"    {line}" for line in (report / "commands.txt").read_text().splitlines()]
    results = (raw / "tests.txt").read_text() if (raw / "tests.txt").exists() else ""
    log = raw / "tests.log"
    page = (raw / "page.log").read_text() if (raw / "page.log").exists() else ""
    page_ok = re.search(r"^ok \d+ - the page reconnects", page, re.M) is not None
    out += ["", "## Results", "", "| fault | test | acknowledged vs counted | windows | recovery |",
            "| --- | --- | --- | --- | --- |"]

    failed = "FAILED" in results or (log.exists() and "panicked" in log.read_text())

    def passed(name):
        # A test writes its figures only once every assertion held.
        return "passed" if not failed else "see raw/tests.log"

    outage = load(raw, "broker-outage")
    if outage:
        out.append(
            f"| broker stopped {outage['outage_seconds']:.0f} s (sqlite storage) under load "
            f"| {passed('a_broker_outage')} "
            f"| {outage['events_acknowledged']} acknowledged (201), each once in the topic and in the windows; "
            f"{outage['acknowledged_late']} of them late; {outage['events_accepted_202']} answered 202, "
            f"{outage['events_accepted_202_lost']} lost; topic {outage['events_in_topic']} = "
            f"windows {outage['events_in_windows']} + late {outage['events_late']} "
            f"| {outage['windows']} windows equal to the reference over the on-time events: "
            f"{outage['windows_equal_reference']} "
            f"| first 201 {outage['recovery_seconds']:.2f} s after the broker was back; "
            f"producers replaced: {outage['ingest_producer_replacements']:.0f} |")
    killed = load(raw, "dataflow-killed")
    if killed:
        recoveries = ", ".join(f"{r:.2f}" for r in killed["recovery_seconds"])
        out.append(
            f"| dataflow SIGKILL x{killed['kills']} in {killed['seconds']} s at "
            f"{killed['offered_events_per_second']} events/s offered "
            f"| {passed('a_dataflow_killed_again')} "
            f"| {killed['events_acknowledged']} acknowledged, {killed['events_delivered']} delivered; "
            f"counted {killed['events_counted_killed']} (killed run) and "
            f"{killed['events_counted_uninterrupted']} (uninterrupted) "
            f"| {killed['windows']} windows, equal: {killed['windows_equal']} "
            f"| first window after each restart: {recoveries} s |")
    broadcaster = load(raw, "broadcaster-killed")
    if broadcaster:
        out.append(
            f"| broadcaster SIGKILL, down 5 s, {broadcaster['clients']} load-tool clients "
            f"| {passed('the_load_tool_reconnects')} "
            f"| n/a (windows, not events) "
            f"| {broadcaster['windows']} windows, every client got "
            f"{broadcaster['windows_every_client_got']} of them; page: "
            f"{'reconnected, no window of the ring missed' if page_ok else 'FAILED, see raw/page.log'} "
            f"| {broadcaster['reconnects']} reconnections, longest {broadcaster['longest_reconnect_ms']} ms "
            f"(from the drop; the broadcaster was down 5 s and up again in "
            f"{broadcaster['restarted_broadcaster_up_seconds']:.2f} s) |")
    sigterm = load(raw, "sigterm")
    if sigterm:
        exits = ", ".join(f"{k} {v:.2f} s" for k, v in sigterm["seconds_to_exit_0"].items())
        out.append(
            f"| SIGTERM to every service under traffic "
            f"| {passed('every_service_stops_cleanly')} "
            f"| {sigterm['events_accepted']} accepted, {sigterm['events_in_topic']} in the topic "
            f"| n/a | exit 0 in: {exits} |")
    if outage:
        out += ["", "Requests during the outage run: acknowledged traffic "
                f"{statuses(outage['requests']['acknowledged_traffic'])}; fire-and-forget traffic "
                f"{statuses(outage['requests']['fire_and_forget_traffic'])} (every 503 with Retry-After, "
                "no request without an answer); events answered 202 sent again after the outage: "
                f"{outage['ingest_events_resent']:.0f}."]
    if killed:
        out += ["", "Requests during the dataflow kills: "
                + "; ".join(statuses(r) for r in killed["requests"]) + "."]
    out += ["", "Raw: raw/*.json (figures), raw/tests.log, raw/page.log."]
    (report / "summary.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
