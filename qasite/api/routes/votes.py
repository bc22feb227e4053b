"""Votes on questions and answers: PUT your vote, DELETE to retract it."""

from __future__ import annotations

from fastapi import APIRouter

from qasite.api.deps import AnswerId, Author, QuestionId, WriteTx
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.schemas import VoteIn, VoteOut
from qasite.domain.models import Answer, Question
from qasite.domain.posts import load_answer, load_question
from qasite.domain.votes import cast_vote

router = APIRouter(prefix="/api", tags=["votes"], responses=ERROR_RESPONSES)


async def _vote(tx: WriteTx, user_id: int, post: Question | Answer, value: int) -> VoteOut:
    result = await cast_vote(tx.session, user_id, post, value)
    await tx.commit()
    return VoteOut.model_validate(
        {
            "post": result.post,
            "score": result.score,
            "version": result.version,
            "my_vote": result.my_vote,
        }
    )


@router.put("/questions/{question_id}/vote", response_model=VoteOut)
async def vote_question(
    question_id: QuestionId, body: VoteIn, tx: WriteTx, user: Author
) -> VoteOut:
    """Vote +1 or -1 on a question (not your own); voting again changes your vote."""
    return await _vote(tx, user.id, await load_question(tx.session, question_id), body.value)


@router.delete("/questions/{question_id}/vote", response_model=VoteOut)
async def retract_question_vote(question_id: QuestionId, tx: WriteTx, user: Author) -> VoteOut:
    return await _vote(tx, user.id, await load_question(tx.session, question_id), 0)


@router.put("/answers/{answer_id}/vote", response_model=VoteOut)
async def vote_answer(answer_id: AnswerId, body: VoteIn, tx: WriteTx, user: Author) -> VoteOut:
    """Vote +1 or -1 on an answer (not your own); voting again changes your vote."""
    return await _vote(tx, user.id, await load_answer(tx.session, answer_id), body.value)


@router.delete("/answers/{answer_id}/vote", response_model=VoteOut)
async def retract_answer_vote(answer_id: AnswerId, tx: WriteTx, user: Author) -> VoteOut:
    return await _vote(tx, user.id, await load_answer(tx.session, answer_id), 0)
