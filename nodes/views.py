"""The staff dashboard's pages: the live fleet (filled by its socket) and the job lookup."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from dispatch import room_selectors, selectors
from dispatch.protocol import ROOM_CODE
from nodes.story import story_told

LOOKUP_ID = re.compile(r"^[\w.:-]{1,200}$")
JOBS_PER_PAGE = 50  # a session's jobs shown at once (a long session holds thousands)


@staff_member_required
async def dashboard(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    return render(request, "dashboard/index.html", {"staff_name": user.get_username(), "section": "fleet"})


def job_told(story: dict[str, str]) -> dict[str, Any]:
    """A job's story as the lookup shows it; a room job's also names its room and group."""
    return {**story_told(story), "room": story.get("room", ""), "group": story.get("group", "")}


@staff_member_required
async def job_lookup(request: HttpRequest) -> HttpResponse:
    """``?job_id=`` goes to that job; ``?trace_id=`` or ``?session_id=`` lists a session's jobs,
    ``?room_code=`` the jobs placed for a room, each with its language group; ``JOBS_PER_PAGE`` at
    a time (``?page=``, oldest first)."""
    user = await request.auser()
    job_id = request.GET.get("job_id", "").strip()
    if job_id and LOOKUP_ID.match(job_id):
        return redirect(reverse("dashboard:job", args=[job_id]))
    trace_id = request.GET.get("trace_id", "").strip()
    session_id = request.GET.get("session_id", "").strip()
    room_code = request.GET.get("room_code", "").strip()
    sessions: list[dict[str, object]] = []
    asked = bool(trace_id or session_id or room_code)
    if trace_id and LOOKUP_ID.match(trace_id):
        session_ids = await selectors.trace_session_ids(trace_id)
    elif session_id and LOOKUP_ID.match(session_id):
        session_ids = [session_id]
    else:
        session_ids = []
    page = int(request.GET["page"]) if request.GET.get("page", "").isdigit() else 0
    pages = 0
    for sid in session_ids:
        count, job_ids = await selectors.session_jobs_page(sid, offset=page * JOBS_PER_PAGE, limit=JOBS_PER_PAGE)
        pages = max(pages, -(-count // JOBS_PER_PAGE))
        jobs = [job_told(story) for story in await selectors.job_stories(job_ids)]
        sessions.append({
            "session_id": sid, "trace_id": jobs[0]["trace"] if jobs else trace_id or "", "jobs": jobs,
            "count": count, "first": page * JOBS_PER_PAGE + 1, "last": page * JOBS_PER_PAGE + len(job_ids),
        })
    room_jobs = []
    if room_code and ROOM_CODE.fullmatch(room_code):
        count, job_ids = await room_selectors.room_jobs_page(room_code, offset=page * JOBS_PER_PAGE, limit=JOBS_PER_PAGE)
        pages = max(pages, -(-count // JOBS_PER_PAGE))
        room_jobs = [job_told(story) for story in await selectors.job_stories(job_ids)]
    context = {
        "staff_name": user.get_username(),
        "section": "jobs",
        "trace_id": trace_id,
        "session_id": session_id,
        "room_code": room_code,
        "asked": asked,
        "sessions": sessions,
        "room_jobs": room_jobs,
        "found": any(s["jobs"] for s in sessions) or bool(room_jobs),
        "page": page,
        "previous_page": page - 1 if page > 0 else None,
        "next_page": page + 1 if page + 1 < pages else None,
        "history_s": settings.SCHEDULER_JOB_HISTORY_S,
    }
    return render(request, "dashboard/jobs.html", context)


@staff_member_required
async def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    user = await request.auser()
    story = await selectors.job_story(job_id)
    context = {
        "staff_name": user.get_username(),
        "section": "jobs",
        "job_id": job_id,
        "job": job_told(story) if story else None,
        "history_s": settings.SCHEDULER_JOB_HISTORY_S,
    }
    return render(request, "dashboard/job.html", context, status=200 if story else 404)
